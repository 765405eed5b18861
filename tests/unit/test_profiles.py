"""Profile configuration, choice and the cards' HTML (pure functions; the hub and cloud side
is in tests/integration/test_profiles.py and tests/e2e/test_spawn_page.py)."""

from __future__ import annotations

import pytest

from hepsdesk_spawner.capacity import GpuCapacity, flavor_gpu_request
from hepsdesk_spawner.options_form import Card, render
from hepsdesk_spawner.profiles import Profile, ProfileError, ProfileRefused, choose, parse_profiles

BASE = {"slug": "desktop", "display_name": "Desktop", "image": "hepsdesk-desktop", "flavor": "c1.small"}


@pytest.mark.parametrize("entry, error", [
    ({**BASE, "flavour": "x"}, "profile 'desktop': unknown key(s) flavour"),
    ({"slug": "x", "display_name": "X"}, "profile 'x': missing image, flavor"),
    ({**BASE, "slug": "Bad Slug"}, "slug must be lower-case letters"),
    ({**BASE, "stop_mode": "hibernate"}, "stop_mode must be one of delete, shelve, not 'hibernate'"),
    ({**BASE, "data_mounts": ["home"]}, "a data mount must be a dict"),
    ({**BASE, "data_mounts": [{"source": "s:/p/{project}", "target": "/p"}]},
     "data mount #0: unknown placeholder(s) project"),
    ({**BASE, "data_mounts": [{"source": "s:/h", "target": "/h", "mode": "rw"}]}, "data mount #0: unknown key(s) mode"),
    ({**BASE, "data_mounts": {"source": "s:/h"}}, "must be a list"),
    ({**BASE, "gpu_model": "A100"}, "give both gpu_model and gpu_count"),
    ({**BASE, "gpu_count": "two"}, "must be whole numbers"),
    ({**BASE, "allowed_groups": "heps-users"}, "allowed_groups must be a list"),
    ("desktop", "profile #0 must be a dict"),
])
def test_a_wrong_profile_names_the_profile_and_the_mistake(entry, error):
    with pytest.raises(ProfileError, match=r".*") as info:
        parse_profiles([entry])
    assert error in str(info.value)


def test_duplicate_slugs_and_two_defaults_are_refused():
    with pytest.raises(ProfileError, match="used more than once: desktop"):
        parse_profiles([BASE, BASE])
    with pytest.raises(ProfileError, match="more than one profile has default"):
        parse_profiles([{**BASE, "default": True}, {**BASE, "slug": "b", "default": True}])


def test_groups_limit_who_may_use_a_profile_and_admins_may_use_all():
    gpu = Profile.from_config({**BASE, "slug": "gpu", "allowed_groups": ["heps-users"]}, 0)
    assert gpu.allows(["heps-users", "x"]) and not gpu.allows(["csns-users"])
    assert gpu.allows([], admin=True)
    assert Profile.from_config(BASE, 0).allows([])


def test_choose_gives_the_default_or_refuses_with_what_the_user_may_start():
    profiles = parse_profiles([BASE, {**BASE, "slug": "imaging", "default": True}])
    assert choose(profiles, None).slug == "imaging" and choose(profiles, "").slug == "imaging"
    assert choose(profiles, "desktop").slug == "desktop"
    with pytest.raises(ProfileRefused, match="The environment gpu does not exist or is not available to you. "
                                             "You may start: desktop, imaging."):
        choose(profiles, "gpu")
    with pytest.raises(ProfileRefused, match=r"\(an invalid name\)"):
        choose(profiles, "<script>")
    with pytest.raises(ProfileRefused, match="no environment you may start"):
        choose([], "desktop")


def test_flavor_extra_specs_give_the_gpu_request():
    assert flavor_gpu_request({"resources1:VGPU": "2", "trait1:CUSTOM_GPU_A100": "required",
                               "trait2:CUSTOM_GPU_T4": "required"}) == ("CUSTOM_GPU_A100", 2)
    assert flavor_gpu_request({"resources:VGPU": "1", "trait:CUSTOM_GPU_H100": "required"}) == ("CUSTOM_GPU_H100", 1)
    assert flavor_gpu_request({"hw:cpu_policy": "dedicated"}) == ("", 0)


def test_cards_escape_everything_and_a_full_gpu_profile_cannot_be_chosen():
    evil = Profile.from_config({**BASE, "display_name": "<img src=x onerror=alert(1)>",
                                "description": '"><script>x</script>', "default": True}, 0)
    gpu = Profile.from_config({**BASE, "slug": "gpu", "gpu_model": "A100", "gpu_count": 1}, 1)
    html = render([Card(evil, software="<b>Fiji</b>", vcpus=2, ram_mb=4096),
                   Card(gpu, gpus=GpuCapacity("A100", 4, 0))])
    assert "<img" not in html and "<script>" not in html and "<b>Fiji" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "2 vCPU, 4 GB RAM" in html
    assert 'value="desktop" checked' in html
    assert 'value="gpu" disabled' in html and "1x A100 GPU (0 of 4 A100 free)" in html


def test_the_profile_of_a_shelved_vm_is_chosen_first_and_says_what_another_choice_does():
    default = Profile.from_config({**BASE, "default": True}, 0)
    kept = Profile.from_config({**BASE, "slug": "kept", "stop_mode": "shelve"}, 1)
    html = render([Card(default), Card(kept, shelved=True)])
    assert 'value="kept" checked' in html and 'value="desktop" checked' not in html
    assert "shelved: starting it resumes it as you left it" in html
    assert "Starting another environment deletes it" in html

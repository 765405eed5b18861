"""The production recipes (diskimage-builder elements) are made from the catalogue, and complete."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from hepsdesk_images import recipes
from hepsdesk_images.catalogue import CATALOGUE, CatalogueError, load, parse
from hepsdesk_images.store import image_info

OPT = Path("/opt/hepsdesk")


@pytest.fixture(scope="module")
def catalogue():
    return load()


@pytest.fixture(scope="module")
def out(tmp_path_factory, catalogue) -> Path:
    out = tmp_path_factory.mktemp("recipes")
    recipes.write_recipes(catalogue, out)
    return out


def deps(out: Path, element: str) -> list[str]:
    return (out / "elements" / element / "element-deps").read_text().split()


def words(path: Path) -> list[str]:
    """The script as the shell splits it into words (quotes removed, comments dropped)."""
    return shlex.split(path.read_text(), comments=True)


def hooks(out: Path) -> list[Path]:
    """Every script disk-image-create runs (environment.d files are sourced, not run)."""
    return sorted(p for p in (out / "elements").glob("*/*.d/*") if p.parent.name != "environment.d")


def stack_script(out: Path, stack: str) -> Path:
    return out / "elements" / f"hepsdesk-stack-{stack}" / "install.d" / f"50-hepsdesk-stack-{stack}"


def test_every_image_has_an_element_with_its_stacks_and_production_software(out, catalogue):
    for image in catalogue.images.values():
        element = f"hepsdesk-image-{image.name}"
        needed = {"hepsdesk-base", "hepsdesk-stack-server", *(f"hepsdesk-stack-{s}" for s in image.stacks),
                  *(f"hepsdesk-production-{p}" for p in image.production)}
        assert needed <= set(deps(out, element))
        # Every element named as a dependency of ours is written (the others are diskimage-builder's).
        for name in deps(out, element):
            assert not name.startswith("hepsdesk-") or (out / "elements" / name / "README.rst").is_file()
        packages = yaml.safe_load((out / "elements" / element / "package-installs.yaml").read_text()) \
            if catalogue.debian_packages(image) else {}
        assert list(packages) == catalogue.debian_packages(image)
        build = out / f"build-{image.name}.sh"
        assert os.access(build, os.X_OK)
        text = build.read_text()
        assert "export DIB_RELEASE=bookworm" in text and "export DIB_PYTHON_VERSION=3" in text
        assert f"-t qcow2 \\\n    vm \"${{HEPSDESK_DIB_BASE:-debian-minimal}}\" {element} \"$@\"\n" in text
    assert "hepsdesk-desktop" in catalogue.images and deps(out, "hepsdesk-image-hepsdesk-desktop")


def test_every_pinned_requirement_is_installed_exactly_from_wheels(out, catalogue):
    for stack in catalogue.stacks.values():
        script = stack_script(out, stack.name)
        tokens = words(script)
        assert f"/opt/hepsdesk/envs/{stack.name}" in script.read_text()
        for requirement in stack.requirements:
            assert tokens.count(requirement) == 2, (stack.name, requirement)  # --dry-run, then install
        assert tokens.count("--only-binary=:all:") == 2
        no_binary = [t for t in tokens if t.startswith("--no-binary")]
        if stack.build_from_source:
            assert no_binary == [f"--no-binary={','.join(stack.build_from_source)}"] * 2
            build = yaml.safe_load((script.parents[1] / "package-installs.yaml").read_text())
            assert build["build-essential"] == {"build-only": True}
        else:
            assert no_binary == []
    # PyPI has no Linux wheels of these two: the stacks say so, and the recipes build them.
    assert "--no-binary=fisx" in words(stack_script(out, "xrf"))
    assert "--no-binary=sharedmem" in words(stack_script(out, "dioptas"))


def test_the_server_stack_installs_hepsdesk_from_the_wheel_and_is_on_every_path(out):
    element = out / "elements" / "hepsdesk-stack-server"
    text = (element / "install.d" / "50-hepsdesk-stack-server").read_text()
    assert 'env_pip install -q --no-deps "$1"' in text and "/tmp/in_target.d/hepsdesk-wheel/*.whl" in text
    assert "set_environment PATH /opt/hepsdesk/envs/server/bin:" in text
    assert "ln -sfn \"$env/bin/jupyterhub-singleuser\" /usr/local/bin/jupyterhub-singleuser" in text
    assert 'cp "$DIB_HEPSDESK_WHEEL"' in (element / "extra-data.d" / "50-hepsdesk-wheel").read_text()
    profile = (element / "static/etc/profile.d/hepsdesk-server.sh").read_text()
    assert "PATH=/opt/hepsdesk/envs/server/bin:$PATH" in profile
    drop_in = out / "elements/hepsdesk-base/static/etc/systemd/system/cloud-final.service.d/hepsdesk-environment.conf"
    assert "EnvironmentFile=-/etc/environment" in drop_in.read_text()


def test_every_production_item_of_an_image_is_installed_by_its_element(out, catalogue):
    seen = set()
    for image in catalogue.images.values():
        for name in image.production:
            seen.add(name)
            item = catalogue.production[name]
            element = f"hepsdesk-production-{name}"
            assert element in deps(out, f"hepsdesk-image-{image.name}")
            script = out / "elements" / element / "install.d" / f"60-{element}"
            tokens = words(script)
            if item.conda:
                assert "hepsdesk-micromamba" in deps(out, element)
                assert item.conda["package"] in tokens and item.conda["channel"] in tokens
                assert f"/opt/hepsdesk/conda/{name}" in tokens or f"prefix=/opt/hepsdesk/conda/{name}" in tokens
            else:
                assert item.archive in tokens and f"target=/opt/{name}" in tokens
            if item.command:
                assert recipes.production_command(item)[0] in tokens  # checked to be an executable
    assert seen == {"mantid-workbench", "tomopy", "fiji"}
    fiji = words(out / "elements/hepsdesk-production-fiji/install.d/60-hepsdesk-production-fiji")
    assert "/opt/fiji/fiji-linux-x64" in fiji


def test_image_json_is_the_stores_with_opt_paths_plus_the_production_software(out, catalogue):
    for image in catalogue.images.values():
        image_dir = out / "elements" / f"hepsdesk-image-{image.name}" / "static" / "opt/hepsdesk/image"
        expected = image_info(catalogue, image, {s.name: OPT / "envs" / s.name for s in catalogue.image_stacks(image)},
                              OPT / "image", which=lambda command: f"/usr/bin/{command}")
        for name in image.production:
            item = catalogue.production[name]
            if item.command:
                expected["applications"].append({
                    "name": name, "title": item.title, "version": item.version,
                    "command": recipes.production_command(item), "window": item.window or item.title,
                    "opens": list(item.opens), "icon": ""})
            if item.conda:
                expected["kernels"].append(f"hepsdesk-{name}")
        assert json.loads((image_dir / "image.json").read_text()) == expected
        for kernel in expected["kernels"]:
            spec = json.loads((image_dir / "jupyter" / "kernels" / kernel / "kernel.json").read_text())
            name = kernel.removeprefix("hepsdesk-")
            home = OPT / "envs" / name if name in catalogue.stacks else OPT / "conda" / name
            assert spec["argv"] == [str(home / "bin/python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
            assert spec["env"] == {"PYTHONPATH": "/opt/hepsdesk/image/python"}
            assert spec["metadata"]["hepsdesk_stack"] == name and spec["language"] == "python"
        for app in expected["applications"]:
            if app["icon"]:
                assert (image_dir / "icons" / Path(app["icon"]).name).is_file()
        profile = (image_dir.parents[2] / "etc/profile.d/hepsdesk-image.sh").read_text()
        script = (out / "elements" / f"hepsdesk-image-{image.name}" / "install.d" / f"80-hepsdesk-image-{image.name}")
        for variable, value in (("HEPSDESK_IMAGE_INFO", "/opt/hepsdesk/image/image.json"),
                                ("JUPYTER_PATH", "/opt/hepsdesk/image/jupyter"),
                                ("HEPSDESK_SAMPLE_DATA", "/opt/hepsdesk/image/sample-data")):
            assert f"export {variable}={value}\n" in profile
            assert f"set_environment {variable} {value}\n" in script.read_text()
        for sample in image.sample_data:
            source = f'"$(site_packages /opt/hepsdesk/envs/{sample.stack})"/{shlex.quote(sample.path)}'
            assert f'ln -sfn {source} "$image/sample-data"/{shlex.quote(sample.name)}\n' in script.read_text()
    neutron = json.loads((out / "elements/hepsdesk-image-hepsdesk-neutron/static/opt/hepsdesk/image/image.json")
                         .read_text())
    assert "/opt/hepsdesk/conda/mantid-workbench/bin/workbench" in [a["command"][0] for a in neutron["applications"]]


def test_glance_properties_are_the_catalogues_with_production_software_real(out, catalogue):
    for image in catalogue.images.values():
        properties = json.loads((out / f"{image.name}.glance-properties.json").read_text())
        expected = catalogue.glance_properties(image)
        production = catalogue.production_only(image)
        software = ", ".join([expected["hepsdesk_software"], *production])
        applications = [a for a in expected["hepsdesk_applications"].split(", ") if a]
        applications += [catalogue.production[p].title for p in image.production if catalogue.production[p].command]
        assert properties == {**expected, "hepsdesk_software": software,
                              "hepsdesk_applications": ", ".join(applications), "hepsdesk_production_only": ""}
        upload = words(out / f"upload-{image.name}.sh")
        for key, value in properties.items():
            assert upload[upload.index(f"{key}={value}") - 1] == "--property"
        command = upload[upload.index("openstack"):]
        assert command[:9] == ["openstack", "image", "create", "--disk-format", "qcow2", "--container-format",
                               "bare", "--file", f"$here/{image.name}.qcow2"]
        assert command[-1] == image.name
        assert recipes.upload_command(catalogue, image) == [*command[:8], f"{image.name}.qcow2", *(
            w for key, value in properties.items() for w in ("--property", f"{key}={value}")), image.name]
    imaging = json.loads((out / "hepsdesk-imaging.glance-properties.json").read_text())
    assert "TomoPy 1.15.2" in imaging["hepsdesk_software"] and "Fiji 2.16.0" in imaging["hepsdesk_software"]


def test_every_script_is_executable_strict_and_parses(out):
    scripts = hooks(out)
    assert len(scripts) > len(load().images) + len(load().stacks)
    for script in [*scripts, *out.glob("*.sh")]:
        text = script.read_text()
        assert os.access(script, os.X_OK), script
        assert text.startswith("#!"), script
        if text.startswith("#!/usr/bin/env python3"):
            compile(text, str(script), "exec")
            continue
        shell = text.split("\n", 1)[0].removeprefix("#!")
        assert shell in ("/bin/bash", "/bin/sh"), script
        assert "\nset -eu\n" in text[:200] or "\nset -eux\n" in text[:200], script
        done = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, (script, done.stderr)
    for sourced in (out / "elements").glob("*/environment.d/*"):
        assert subprocess.run(["bash", "-n", str(sourced)]).returncode == 0


def test_the_accounts_declaration_runs_outside_the_chroot(out, tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\n")
    (root / "etc/group").write_text("root:x:0:\nstaff:x:50:\n")
    script = next((out / "elements/hepsdesk-image-hepsdesk-desktop/cleanup.d").iterdir())
    declared = tmp_path / "accounts.properties"
    env = {**os.environ, "TARGET_ROOT": str(root), "DIB_HEPSDESK_ACCOUNTS": str(declared)}
    subprocess.run([str(script)], env=env, check=True, capture_output=True)
    lines = dict(line.split("=", 1) for line in declared.read_text().splitlines())
    assert lines == {"hepsdesk_account_ids": "0-999,65534", "hepsdesk_account_names": "nobody,root,staff"}


def test_shell_metacharacters_from_the_catalogue_end_up_quoted(tmp_path):
    data = yaml.safe_load(CATALOGUE.read_text())
    evil = "$(touch /tmp/hepsdesk-pwned)`id`;'\"&& reboot"
    data["stacks"]["xrf"]["build_from_source"] = [f"fisx{evil}"]
    data["production"]["mantid-workbench"]["conda"] = {"channel": f"mantid {evil}", "package": f"mantid=6.13 {evil}"}
    data["production"]["fiji"]["archive"] = f"https://example.org/{evil}/fiji.zip"
    data["images"]["hepsdesk-neutron"]["sample_data"][0]["path"] = f"sas/example data/{evil}"
    data["images"]["hepsdesk-neutron"]["description"] = f"SANS {evil}"
    out = tmp_path / "out"
    recipes.write_recipes(parse(data), out)
    assert f"--no-binary=fisx{evil}" in words(stack_script(out, "xrf"))
    element = "hepsdesk-production-mantid-workbench"
    mantid = words(out / "elements" / element / "install.d" / f"60-{element}")
    assert f"mantid {evil}" in mantid and f"mantid=6.13 {evil}" in mantid
    fiji = words(out / "elements/hepsdesk-production-fiji/install.d/60-hepsdesk-production-fiji")
    assert f"https://example.org/{evil}/fiji.zip" in fiji
    neutron = out / "elements/hepsdesk-image-hepsdesk-neutron/install.d/80-hepsdesk-image-hepsdesk-neutron"
    assert shlex.quote(f"sas/example data/{evil}") in neutron.read_text()
    for script in [*hooks(out), *out.glob("*.sh")]:
        if not script.read_text().startswith("#!/usr/bin/env python3"):
            assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, script
    # The upload script runs here: a stand-in `openstack` shows the words it got.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "openstack").write_text('#!/usr/bin/env python3\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n')
    (bin_dir / "openstack").chmod(0o755)
    done = subprocess.run([str(out / "upload-hepsdesk-neutron.sh")], capture_output=True, text=True, check=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    argv = json.loads(done.stdout)
    assert f"hepsdesk_description=SANS {evil}" in argv and argv[-1] == "hepsdesk-neutron"
    assert not Path("/tmp/hepsdesk-pwned").exists()


def test_names_that_cannot_be_paths_are_refused(tmp_path):
    data = yaml.safe_load(CATALOGUE.read_text())
    data["production"]["../fiji"] = data["production"].pop("fiji")
    data["images"]["hepsdesk-imaging"]["production"] = ["tomopy", "../fiji"]
    with pytest.raises(CatalogueError, match="cannot name"):
        recipes.write_recipes(parse(data), tmp_path)
    with pytest.raises(CatalogueError, match="no image 'nope'"):
        recipes.write_recipes(load(), tmp_path, ["nope"])


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hepsdesk")
    images = top.add_subparsers(dest="command").add_parser("images").add_subparsers(dest="images_command")
    recipes.add_parsers(images)
    return top


def test_the_recipes_command_writes_one_image(tmp_path, capsys):
    args = parser().parse_args(["images", "recipes", "hepsdesk-desktop", "--out", str(tmp_path)])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "build-hepsdesk-desktop.sh") in printed
    assert str(tmp_path / "elements" / "hepsdesk-image-hepsdesk-desktop") in printed
    assert not (tmp_path / "elements" / "hepsdesk-image-hepsdesk-neutron").exists()


def test_qcow2_refuses_clearly_without_root_or_tools(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(recipes.shutil, "which", lambda tool: None)
    args = parser().parse_args(["images", "qcow2", "hepsdesk-desktop", "--out", str(tmp_path)])
    assert args.base == "debian-minimal"
    with pytest.raises(RuntimeError) as refused:
        args.handler(args)
    assert "as root" in str(refused.value)
    assert "apt-get install -y --no-install-recommends debootstrap qemu-utils kpartx sudo" in str(refused.value)
    assert not any(tmp_path.iterdir())

"""Messages shown to users: secrets removed from console excerpts, cloud refusals explained."""

from __future__ import annotations

from hepsdesk_spawner.errors import no_capacity, scrub_secrets


def test_known_secret_values_and_secret_looking_assignments_are_removed():
    text = ("JUPYTERHUB_API_TOKEN=abcdef123456 | password: hunter2 | curl ...?token=q1w2e3&x=1 | "
            "OS_APPLICATION_CREDENTIAL_SECRET='s3cr3t' | echo abcdef123456 | all fine")
    clean = scrub_secrets(text, ["abcdef123456"])
    for secret in ("abcdef123456", "hunter2", "q1w2e3", "s3cr3t"):
        assert secret not in clean
    assert "password: [secret]" in clean and "token=[secret]&x=1" in clean and "all fine" in clean


def test_no_valid_host_is_explained_with_the_free_gpus_and_other_faults_are_not():
    error = no_capacity("No valid host was found. There are not enough hosts available.", "A100", 2,
                        "1 of 4 A100 free")
    assert error.jupyterhub_message.startswith("No machine has 2 free A100 GPUs right now (1 of 4 A100 free).")
    assert error.reason == "no_capacity" and error.status_code == 503
    assert no_capacity("Build of instance aborted: disk image is broken", "", 0) is None

"""The user-data subset a process VM honours, and the clear refusals for the rest."""

import base64
import gzip
import json
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from hepsdesk_devcloud.service_plugins.hepsdesk_cloudconfig import UnsupportedUserData, build_boot_plan


def script(plan: dict, name: str) -> str:
    return next(base64.b64decode(s["content_b64"]).decode() for s in plan["scripts"] if s["name"] == name)


def test_shell_script_user_data_runs_as_one_script():
    plan = build_boot_plan(b"#!/bin/sh\necho hello\n")
    assert script(plan, "part-001") == "#!/bin/sh\necho hello\n"
    assert plan["write_files"] == [] and plan["bootcmd"] == []


def test_cloud_config_subset():
    zipped = base64.b64encode(gzip.compress(b"zipped!")).decode()
    plan = build_boot_plan(f"""#cloud-config
hostname: lab-node
bootcmd:
  - echo early
write_files:
  - path: /etc/hepsdesk/env
    content: "A=1\\n"
    permissions: "0600"
    owner: root:root
  - path: /opt/data.bin
    encoding: b64
    content: aGVsbG8=
    defer: true
  - path: /opt/zipped
    encoding: gz+b64
    content: {zipped}
runcmd:
  - echo one
  - [touch, "/tmp/with space"]
final_message: booted
""")
    assert plan["hostname"] == "lab-node"
    assert plan["bootcmd"] == ["echo early"]
    files = {f["path"]: f for f in plan["write_files"]}
    assert base64.b64decode(files["/etc/hepsdesk/env"]["content_b64"]) == b"A=1\n"
    assert files["/etc/hepsdesk/env"]["permissions"] == 0o600
    assert files["/opt/data.bin"]["defer"] is True
    assert base64.b64decode(files["/opt/data.bin"]["content_b64"]) == b"hello"
    assert base64.b64decode(files["/opt/zipped"]["content_b64"]) == b"zipped!"
    assert script(plan, "runcmd") == "#!/bin/sh\necho one\ntouch '/tmp/with space'\n"
    assert plan["final_message"] == "booted"
    json.dumps(plan)  # the plan travels to the guest as JSON


def test_mounts_as_cloud_init_reads_them():
    plan = build_boot_plan(b"""#cloud-config
mounts:
  - [storage:/home/alice, /home/alice, nfs4, "rw,hard", "0", "0"]
  - [storage:/raw/P-1, /data/raw]
""")
    assert plan["mounts"] == [
        {"source": "storage:/home/alice", "target": "/home/alice", "fstype": "nfs4", "options": "rw,hard"},
        {"source": "storage:/raw/P-1", "target": "/data/raw", "fstype": "auto", "options": "defaults"}]


def test_gzip_compressed_user_data():
    plan = build_boot_plan(gzip.compress(b"#cloud-config\nruncmd: [echo zipped]\n"))
    assert "echo zipped" in script(plan, "runcmd")


def test_mime_multipart_user_data():
    message = MIMEMultipart()
    message.attach(MIMEText("#cloud-config\nruncmd: [echo from-config]\n", "cloud-config"))
    message.attach(MIMEText("#!/bin/sh\necho from-script\n", "x-shellscript"))
    plan = build_boot_plan(message.as_bytes())
    assert "echo from-config" in script(plan, "runcmd")
    assert any("echo from-script" in base64.b64decode(s["content_b64"]).decode() for s in plan["scripts"])


def test_empty_user_data_is_a_plain_boot():
    assert build_boot_plan(None)["scripts"] == []
    assert build_boot_plan(b"")["scripts"] == []
    assert build_boot_plan(b"#cloud-config\n")["scripts"] == []


@pytest.mark.parametrize("user_data, message", [
    (b"#cloud-config\npackages: [mantid]\n", "packages not supported"),
    (b"#cloud-config\nusers: [{name: alice}]\n", "users other than .. .no default user. is not supported"),
    (b"#cloud-config\ngroups: [g]\n", "groups not supported"),
    (b"#cloud-config\nmounts: [[/dev/vdb]]\n", "must be a list"),
    (b"#cloud-config\nmounts: [[s:/x, relative]]\n", "absolute path"),
    (b"#cloud-config\nmounts: [[s:/x, /data/../etc]]\n", "without '..'"),
    (b"## template: jinja\n#cloud-config\nruncmd: [echo {{ v1.local_hostname }}]\n", "jinja"),
    (b"#include\nhttp://127.0.0.1/x\n", "#include"),
    (b"#cloud-boothook\n#!/bin/sh\n", "cloud-boothook"),
    (b"#cloud-config\nruncmd: [echo, {a: b}]\n", "runcmd entries must be"),
    (b"#cloud-config\n- just\n- a list\n", "must be a YAML mapping"),
    (b"#cloud-config\nruncmd: [unclosed\n", "not valid YAML"),
    (b"#cloud-config\nwrite_files:\n  - path: relative/path\n", "absolute path"),
    (b"#cloud-config\nwrite_files:\n  - {path: /x, source: {uri: 'http://x'}}\n", "source"),
    (b"#cloud-config\nwrite_files:\n  - {path: /x, encoding: rot13}\n", "encoding 'rot13'"),
    (b"#cloud-config\nwrite_files:\n  - {path: /x, permissions: '999'}\n", "octal"),
    (b"hello, plain text\n", "neither a shell script"),
    (b"\xff\xfe#!/bin/sh\n", "not UTF-8"),
    (b"\x1f\x8bnot really gzip", "does not decompress"),
])
def test_what_a_process_vm_cannot_honour_is_refused_clearly(user_data, message):
    with pytest.raises(UnsupportedUserData, match=message):
        build_boot_plan(user_data)

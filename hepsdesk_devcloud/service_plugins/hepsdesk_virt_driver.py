"""Nova virt driver of the hepsdesk dev cloud: every server is a process VM.

A subclass of nova's fake driver, so scheduling, claims, Placement inventory, quotas, ports
and the API all behave as in any Nova deployment; only the guest is different. A guest is a
process tree started by ``hepsdesk_guest.py`` (the monitor) in its own mount/PID/UTS/IPC
namespaces, with the host's ``/`` (plus the image's disk tree) as its root filesystem, its own
directory ``<instances_path>/<uuid>`` as its disk, its fixed IP from Neutron (a loopback
address) and its user-data run the way cloud-init runs it.

Power operations map onto the monitor: stop is SIGTERM then SIGKILL after a grace period,
start and reboot boot the guest again, delete kills it and removes its directory, snapshot
(shelve, image create) uploads the VM's disk to Glance as a new image. A guest whose
processes die is reported to Nova as stopped, which turns the server SHUTOFF.

GPUs are fake but scheduled for real: each configured model is a child resource provider
with VGPU inventory and a ``CUSTOM_GPU_<MODEL>`` trait, as nova's libvirt driver exposes
mediated devices, so GPU capacity, quotas and exhaustion come from Placement.

Loaded by ``hepsdesk_nova_service.py compute`` as ``nova.virt.hepsdesk_process``; configured in the
``[hepsdesk]`` section of nova.conf.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

import hepsdesk_cloudconfig
import hepsdesk_process_image
import nova.conf
import nova.virt.node
from hepsdesk_flavor_specs import NO_PROCESS_SPEC, gpu_trait
from hepsdesk_procinfo import is_same_process, start_ticks
from nova import exception
from nova.compute import power_state, task_states
from nova.image import glance
from nova.virt import event as virtevent
from nova.virt import fake, hardware
from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

OPTS = [
    cfg.DictOpt("gpus", default={},
                help="Fake GPUs of this host as MODEL:COUNT[,MODEL:COUNT], e.g. A100:4"),
    cfg.IntOpt("vcpus", default=512, help="VCPU inventory reported to Placement"),
    cfg.IntOpt("memory_mb", default=1024 * 1024, help="MEMORY_MB inventory reported to Placement"),
    cfg.IntOpt("disk_gb", default=10000, help="DISK_GB inventory reported to Placement"),
    cfg.IntOpt("stop_grace", default=10,
               help="Seconds between SIGTERM and SIGKILL when a guest is stopped"),
    cfg.IntOpt("boot_timeout", default=30,
               help="Seconds a guest may take to build its root filesystem"),
    cfg.ListOpt("hide_paths", default=[],
                help="Host directories guests must not see (the dev cloud's state)"),
    cfg.ListOpt("storage_servers", default=[],
                help="Names of the NFS servers guests' mounts reach: the host's storage_root stands for them"),
    cfg.StrOpt("storage_root", default="",
               help="Host directory that stands for the storage servers' exports (SERVER:/x is <root>/x)"),
    cfg.StrOpt("guest_path", default="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               help="PATH of guest processes, after the image's own entries"),
    cfg.FloatOpt("watch_interval", default=1.0,
                 help="Seconds between checks for guests that died"),
]
CONF.register_opts(OPTS, group="hepsdesk")

GUEST_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hepsdesk_guest.py")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class GuestBootError(Exception):
    pass


class ProcessVM:
    """One guest: its directory, its persisted description and its monitor process."""

    def __init__(self, vmdir: str):
        self.dir = vmdir
        self.uuid = os.path.basename(vmdir)
        self.state: dict = {}
        self._process: subprocess.Popen | None = None
        self.reported_dead = False
        path = self._path("vm.json")
        if os.path.exists(path):
            with open(path) as f:
                self.state = json.load(f)

    def _path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    def save(self) -> None:
        tmp = self._path("vm.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=1, sort_keys=True)
        os.replace(tmp, self._path("vm.json"))

    @property
    def console_path(self) -> str:
        return self._path("console.log")

    @property
    def has_processes(self) -> bool:
        return self.state.get("processes", True)

    def alive(self) -> bool:
        if not self.has_processes:
            return self.state.get("power") == "running"
        if self._process is not None and self._process.poll() is not None:
            return False
        return is_same_process(self.state.get("monitor_pid"), self.state.get("monitor_start"))

    def start(self, timeout: float) -> None:
        """Boot the guest; return once its root filesystem is up and user-data is running."""
        self.state["power"] = "running"
        self.reported_dead = False
        if not self.has_processes:
            self.save()
            return
        for sub in ("disk/upper", "disk/work", "root"):
            os.makedirs(self._path(sub), exist_ok=True)
        boot = dict(self.state["boot"], started_at=time.time(), upper=self._path("disk/upper"),
                    work=self._path("disk/work"), root=self._path("root"))
        with open(self._path("boot.json"), "w") as f:
            json.dump(boot, f)
        read_fd, write_fd = os.pipe()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        try:
            with open(self.console_path, "ab") as console:
                self._process = subprocess.Popen(
                    [sys.executable, GUEST_SCRIPT, self.dir, "--ready-fd", str(write_fd)],
                    pass_fds=(write_fd,), env=env, cwd="/", stdin=subprocess.DEVNULL,
                    stdout=console, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            os.close(write_fd)
        self.state["monitor_pid"] = self._process.pid
        self.state["monitor_start"] = start_ticks(self._process.pid)
        self.save()
        try:
            answer = self._read_ready(read_fd, timeout)
        finally:
            os.close(read_fd)
        if answer != "ready":
            self.kill()
            raise GuestBootError(f"{answer or 'the guest exited during boot'}; console: "
                                 f"{self.console_tail(600)!r}")

    @staticmethod
    def _read_ready(fd: int, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                return f"no sign of life within {timeout:.0f} s"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
        return data.decode(errors="replace").strip()

    def stop(self, grace: float) -> None:
        """SIGTERM the guest, SIGKILL it after ``grace`` seconds, wait until it is gone."""
        self.state["power"] = "stopped"
        self.save()
        if self.alive() and self.has_processes:
            self._signal(signal.SIGTERM)
            if not self._wait_gone(grace + 1):
                LOG.info("guest %s ignored SIGTERM for %.0f s, killing it", self.uuid, grace)
                self.kill()

    def kill(self) -> None:
        self.state["power"] = "stopped"
        if self.has_processes and self.alive():
            self._signal(signal.SIGKILL)
            self._wait_gone(10)

    def _signal(self, signum: int) -> None:
        try:
            os.kill(self.state["monitor_pid"], signum)
        except ProcessLookupError:
            pass

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                if self._process is not None:
                    self._process.wait()
                return True
            time.sleep(0.05)
        return not self.alive()

    def guest_pids(self) -> list[int]:
        """PIDs (host view) of every process in the guest's PID namespace."""
        try:
            with open(f"/proc/{self.state['monitor_pid']}/task/{self.state['monitor_pid']}/children") as f:
                init = int(f.read().split()[0])
            ns = os.readlink(f"/proc/{init}/ns/pid")
        except (OSError, IndexError, KeyError, ValueError):
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                        pids.append(int(entry))
                except OSError:
                    continue
        return pids

    def freeze(self, frozen: bool) -> None:
        for pid in self.guest_pids():
            try:
                os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.state["frozen"] = frozen
        self.save()

    def console_tail(self, max_bytes: int = 65536) -> str:
        try:
            with open(self.console_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - max_bytes))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


class ProcessDriver(fake.FakeDriver):
    """Nova compute driver running each server as a hepsdesk process VM."""

    capabilities = dict(fake.FakeDriver.capabilities, supports_evacuate=False,
                        supports_attach_interface=False, supports_multiattach=False)

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi)
        self.vcpus = CONF.hepsdesk.vcpus
        self.memory_mb = CONF.hepsdesk.memory_mb
        self.local_gb = CONF.hepsdesk.disk_gb
        self.resources = fake.Resources(self.vcpus, self.memory_mb, self.local_gb)
        self.gpus = {model: int(count) for model, count in CONF.hepsdesk.gpus.items()}
        self._vms: dict[str, ProcessVM] = {}
        self._gpu_providers: dict[str, str] = {}  # resource provider uuid -> model
        self._image_api = glance.API()
        self._image_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    # host

    def init_host(self, host):
        super().init_host(host)
        os.makedirs(self._base_dir, exist_ok=True)
        for entry in sorted(os.listdir(CONF.instances_path)):
            vmdir = os.path.join(CONF.instances_path, entry)
            if UUID_RE.match(entry) and os.path.exists(os.path.join(vmdir, "vm.json")):
                vm = ProcessVM(vmdir)
                self._track(vm)
        LOG.info("hepsdesk process driver: %d guest(s) on disk, GPUs %s", len(self._vms), self.gpus or "none")
        threading.Thread(target=self._watch_guests, name="hepsdesk-guest-watch", daemon=True).start()

    def _track(self, vm: ProcessVM) -> None:
        self._vms[vm.uuid] = vm
        self.instances[vm.uuid] = fake.FakeInstance(vm.state.get("name", vm.uuid), power_state.RUNNING, vm.uuid)

    def _watch_guests(self) -> None:
        while True:
            time.sleep(CONF.hepsdesk.watch_interval)
            for vm in list(self._vms.values()):
                try:
                    if vm.state.get("power") == "running" and not vm.reported_dead and not vm.alive():
                        vm.reported_dead = True
                        LOG.warning("guest %s died; reporting it stopped", vm.uuid)
                        self.emit_event(virtevent.LifecycleEvent(vm.uuid, virtevent.EVENT_LIFECYCLE_STOPPED))
                except Exception:
                    LOG.exception("checking guest %s failed", vm.uuid)

    @property
    def _base_dir(self) -> str:
        return os.path.join(CONF.instances_path, "_base")

    def get_available_resource(self, nodename):
        resources = super().get_available_resource(nodename)
        if resources:
            resources["uuid"] = nova.virt.node.get_local_node_uuid()
            resources["hypervisor_type"] = "hepsdesk-process"
        return resources

    def get_nodenames_by_uuid(self, refresh=False):
        return {nova.virt.node.get_local_node_uuid(): n for n in self.get_available_nodes()}

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        super().update_provider_tree(provider_tree, nodename, allocations=allocations)
        wanted = {f"{nodename}_gpu_{model.lower()}": (model, count) for model, count in self.gpus.items()}
        for child in list(provider_tree.get_provider_uuids(nodename)):
            name = provider_tree.data(child).name
            if name.startswith(f"{nodename}_gpu_") and name not in wanted:
                provider_tree.remove(name)
        gpu_providers = {}
        for name, (model, count) in wanted.items():
            if not provider_tree.exists(name):
                provider_tree.new_child(name, nodename)
            provider_tree.update_inventory(name, {"VGPU": {
                "total": count, "reserved": 0, "min_unit": 1, "max_unit": count, "step_size": 1,
                "allocation_ratio": 1.0}})
            provider_tree.update_traits(name, [gpu_trait(model)])
            gpu_providers[provider_tree.data(name).uuid] = model
        self._gpu_providers = gpu_providers

    # guests

    def _vm(self, instance) -> ProcessVM:
        vm = self._vms.get(instance.uuid)
        if vm is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        return vm

    def spawn(self, context, instance, image_meta, injected_files, admin_password, allocations,
              network_info=None, block_device_info=None, power_on=True, accel_info=None):
        abort = lambda reason: exception.BuildAbortException(instance_uuid=instance.uuid, reason=reason)  # noqa: E731
        try:
            user_data = base64.b64decode(instance.user_data) if instance.user_data else None
            plan = hepsdesk_cloudconfig.build_boot_plan(user_data)
        except hepsdesk_cloudconfig.UnsupportedUserData as e:
            raise abort(f"the user-data cannot be honoured: {e}") from e
        except ValueError as e:
            raise abort(f"the user-data is not valid base64: {e}") from e
        if not instance.image_ref:
            raise abort("booting from volume is not supported by the hepsdesk dev cloud")
        image_dir, manifest = self._fetch_image(context, instance.image_ref)
        super().spawn(context, instance, image_meta, injected_files, admin_password, allocations,
                      network_info=network_info, block_device_info=block_device_info,
                      power_on=power_on, accel_info=accel_info)
        vmdir = os.path.join(CONF.instances_path, instance.uuid)
        try:
            vm = self._prepare(context, instance, vmdir, image_dir, manifest, plan, allocations, network_info)
            self._vms[instance.uuid] = vm
            if power_on:
                vm.start(CONF.hepsdesk.boot_timeout)
        except Exception as e:
            self._forget(instance, vmdir)
            if isinstance(e, GuestBootError):
                raise abort(f"the guest failed to boot: {e}") from e
            raise
        LOG.info("guest booted: pid %s, address %s", vm.state.get("monitor_pid"),
                 vm.state["boot"]["address"], instance=instance)

    def _prepare(self, context, instance, vmdir, image_dir, manifest, plan, allocations,
                 network_info) -> ProcessVM:
        if os.path.exists(vmdir):
            shutil.rmtree(vmdir)
        os.makedirs(vmdir)
        vm = ProcessVM(vmdir)
        address = self._address(network_info)
        gpus = self._assign_gpus(instance.uuid, allocations)
        extra_specs = instance.flavor.extra_specs or {}
        env = {"HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/sh",
               "LANG": "C.UTF-8", "TERM": "linux"}
        env.update(manifest.get("env", {}))
        env["PATH"] = ":".join([*manifest.get("path", []), CONF.hepsdesk.guest_path])
        hostname = instance.hostname or instance.uuid
        image_disk = hepsdesk_process_image.disk_dir(image_dir, manifest)
        if image_disk:
            hepsdesk_process_image.copy_disk(image_disk, os.path.join(vmdir, "disk", "upper"))
        vm.state = {
            "uuid": instance.uuid, "name": instance.display_name, "power": "stopped",
            "processes": extra_specs.get(NO_PROCESS_SPEC, "") != "none",
            "image_id": instance.image_ref, "image_dir": image_dir, "image_manifest": manifest,
            "boot": {
                "uuid": instance.uuid, "name": instance.display_name, "hostname": hostname,
                "address": address, "gpus": gpus, "env": env, "plan": plan,
                "hide": list(CONF.hepsdesk.hide_paths), "stop_grace": CONF.hepsdesk.stop_grace,
                "software_paths": list(dict.fromkeys([*manifest.get("path", []),
                                                      *manifest.get("software_paths", [])])),
                "storage": {"servers": list(CONF.hepsdesk.storage_servers),
                            "root": CONF.hepsdesk.storage_root},
                "instance_data": {
                    "v1": {"cloud_name": "openstack", "platform": "openstack",
                           "instance_id": instance.uuid, "local_hostname": hostname,
                           "availability_zone": instance.availability_zone or "nova",
                           "region": CONF.neutron.region_name or "RegionOne", "local_ipv4": address},
                    "ds": {"meta_data": {"uuid": instance.uuid, "name": instance.display_name,
                                         "hostname": hostname, "project_id": instance.project_id,
                                         "meta": dict(instance.metadata or {})}},
                },
            },
        }
        with open(os.path.join(vmdir, "user-data.plan.json"), "w") as f:
            json.dump(plan, f)
        vm.save()
        return vm

    def _forget(self, instance, vmdir: str) -> None:
        vm = self._vms.pop(instance.uuid, None)
        if vm is not None:
            vm.kill()
        self.instances.pop(instance.uuid, None)
        shutil.rmtree(vmdir, ignore_errors=True)

    @staticmethod
    def _address(network_info) -> str | None:
        for vif in network_info or []:
            for ip in vif.fixed_ips():
                if ip["version"] == 4:
                    return ip["address"]
        return None

    def _assign_gpus(self, uuid: str, allocations) -> list[dict]:
        wanted: dict[str, int] = {}
        for rp_uuid, allocation in (allocations or {}).items():
            model = self._gpu_providers.get(rp_uuid)
            count = allocation.get("resources", {}).get("VGPU", 0)
            if model and count:
                wanted[model] = wanted.get(model, 0) + count
        assigned = []
        with self._lock:
            for model, count in wanted.items():
                used = {g["index"] for vm in self._vms.values() if vm.uuid != uuid
                        for g in vm.state.get("boot", {}).get("gpus", []) if g["model"] == model}
                free = [i for i in range(self.gpus.get(model, 0)) if i not in used]
                for index in free[:count]:
                    assigned.append({"model": model, "index": index, "pci_address": f"0000:{0x81 + index:02x}:00.0"})
        return assigned

    def _fetch_image(self, context, image_id: str) -> tuple[str, dict]:
        """Download and unpack an image once per host (like libvirt's _base cache)."""
        dest = os.path.join(self._base_dir, image_id)
        with self._lock:
            lock = self._image_locks.setdefault(image_id, threading.Lock())
        with lock:
            if not os.path.isdir(dest):
                blob = dest + ".part"
                try:
                    self._image_api.download(context, image_id, dest_path=blob)
                    hepsdesk_process_image.unpack(blob, dest)
                except hepsdesk_process_image.InvalidProcessImage as e:
                    raise exception.ImageUnacceptable(image_id=image_id, reason=str(e)) from e
                finally:
                    if os.path.exists(blob):
                        os.unlink(blob)
            with open(os.path.join(dest, hepsdesk_process_image.MANIFEST)) as f:
                return dest, json.load(f)

    def get_info(self, instance, use_cache=True):
        vm = self._vm(instance)
        if not vm.alive():
            state = power_state.SHUTDOWN
        elif vm.state.get("frozen"):
            state = power_state.PAUSED
        else:
            state = power_state.RUNNING
        return hardware.InstanceInfo(state=state)

    def power_off(self, instance, timeout=0, retry_interval=0):
        grace = timeout if timeout and timeout > 0 else CONF.hepsdesk.stop_grace
        self._vm(instance).stop(min(grace, CONF.hepsdesk.stop_grace))

    def power_on(self, context, instance, network_info, block_device_info=None, accel_info=None,
                 share_info=None):
        vm = self._vm(instance)
        if not vm.alive():
            try:
                vm.start(CONF.hepsdesk.boot_timeout)
            except GuestBootError as e:
                raise exception.InstancePowerOnFailure(reason=str(e)) from e

    def reboot(self, context, instance, network_info, reboot_type, block_device_info=None,
               bad_volumes_callback=None, accel_info=None, share_info=None):
        vm = self._vm(instance)
        if reboot_type.lower() == "hard":
            vm.kill()
        else:
            vm.stop(CONF.hepsdesk.stop_grace)
        self.power_on(context, instance, network_info)

    def resume_state_on_host_boot(self, context, instance, network_info, share_info,
                                  block_device_info=None):
        self.power_on(context, instance, network_info)

    def pause(self, instance):
        self._vm(instance).freeze(True)

    def unpause(self, instance):
        self._vm(instance).freeze(False)

    def suspend(self, context, instance):
        self._vm(instance).freeze(True)

    def resume(self, context, instance, network_info, block_device_info=None, share_info=None):
        self._vm(instance).freeze(False)

    def rescue(self, context, instance, network_info, image_meta, rescue_password,
               block_device_info, share_info):
        raise NotImplementedError("rescue is not supported by hepsdesk process VMs")

    def destroy(self, context, instance, network_info, block_device_info=None, destroy_disks=True,
                destroy_secrets=True):
        vmdir = os.path.join(CONF.instances_path, instance.uuid)
        vm = self._vms.pop(instance.uuid, None)
        if vm is None and os.path.exists(os.path.join(vmdir, "vm.json")):
            vm = ProcessVM(vmdir)
        if vm is not None:
            vm.kill()
        if destroy_disks:
            shutil.rmtree(vmdir, ignore_errors=True)
        super().destroy(context, instance, network_info, block_device_info, destroy_disks, destroy_secrets)

    def snapshot(self, context, instance, image_id, update_task_state):
        vm = self._vms.get(instance.uuid)
        if vm is None:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        snapshot = self._image_api.get(context, image_id)
        blob = os.path.join(CONF.instances_path, f".snapshot-{image_id}.tar")
        try:
            os.makedirs(vm._path("disk/upper"), exist_ok=True)
            hepsdesk_process_image.pack_snapshot(blob, vm.state["image_manifest"], vm._path("disk/upper"),
                                                 name=snapshot["name"])
            update_task_state(task_state=task_states.IMAGE_UPLOADING,
                              expected_state=task_states.IMAGE_PENDING_UPLOAD)
            metadata = {"name": snapshot["name"], "status": "active",
                        "disk_format": hepsdesk_process_image.DISK_FORMAT,
                        "container_format": hepsdesk_process_image.CONTAINER_FORMAT,
                        "properties": {"image_location": "snapshot", "image_state": "available",
                                       "owner_id": instance.project_id}}
            with open(blob, "rb") as data:
                self._image_api.update(context, image_id, metadata, data, purge_props=False)
        finally:
            if os.path.exists(blob):
                os.unlink(blob)

    def get_console_output(self, context, instance):
        return self._vm(instance).console_tail()

    def instance_on_disk(self, instance):
        return os.path.exists(os.path.join(CONF.instances_path, instance.uuid, "vm.json"))

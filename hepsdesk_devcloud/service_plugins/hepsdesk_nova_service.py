"""Start a Nova service (compute, conductor or scheduler) in a single process.

``python hepsdesk_nova_service.py compute|conductor|scheduler --config-file nova.conf``

* compute: nova loads its virt driver as ``nova.virt.<compute_driver>``, so this registers
  ``hepsdesk_virt_driver`` as ``nova.virt.hepsdesk_process`` (nova.conf then says
  ``compute_driver = hepsdesk_process.ProcessDriver``).
* conductor, scheduler: with ``workers = 1`` nova still forks one worker under a parent
  process (oslo.service's threading launcher); on a one-machine cloud that parent is
  ~120 MB for nothing, so they are served in the main process, as nova-compute always is.

* compute: every resource update (each build, each periodic run) reads the allocations of
  every instance on the node from Placement (one request per instance), for a reshape that
  only happens at start-up and for PCI-in-Placement, which the dev cloud does not use. A real
  node holds a few dozen instances; the dev cloud's single node holds thousands in load tests
  (flavor t1.empty), where that read grows quadratically. It is made lazy: done on first use.

Nova's own entry point is imported first: it chooses the concurrency mode before anything
else imports eventlet.
"""

# ruff: noqa: I001 -- the import order below is the point of this module.
import collections.abc
import functools
import importlib
import sys

SERVICES = ("compute", "conductor", "scheduler")


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in SERVICES:
        print(f"usage: {sys.argv[0]} {'|'.join(SERVICES)} --config-file nova.conf", file=sys.stderr)
        return 2
    which = sys.argv.pop(1)
    sys.argv[0] = f"nova-{which}"
    entry = importlib.import_module(f"nova.cmd.{which}")
    if which == "compute":
        import hepsdesk_virt_driver

        sys.modules["nova.virt.hepsdesk_process"] = hepsdesk_virt_driver
        _lazy_provider_tree_allocations()
    else:
        from nova import service

        service.serve = functools.partial(_serve_in_process, service.serve)
    return entry.main() or 0


class LazyAllocations(collections.abc.Mapping):
    """The result of ``get_allocations_for_provider_tree``, fetched when first looked at."""

    def __init__(self, fetch):
        self._fetch = fetch
        self._value = None

    def _data(self):
        if self._value is None:
            self._value = self._fetch()
        return self._value

    def __getitem__(self, key):
        return self._data()[key]

    def __iter__(self):
        return iter(self._data())

    def __len__(self):
        return len(self._data())


def _lazy_provider_tree_allocations() -> None:
    from nova.scheduler.client import report

    original = report.SchedulerReportClient.get_allocations_for_provider_tree

    def lazy(self, context, nodename):
        return LazyAllocations(lambda: original(self, context, nodename))

    report.SchedulerReportClient.get_allocations_for_provider_tree = lazy


def _serve_in_process(serve, server, workers=None, no_fork=False):
    return serve(server, workers=1, no_fork=True)


if __name__ == "__main__":
    sys.exit(main())

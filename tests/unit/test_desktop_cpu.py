"""The desktop server's CPU by stage (``desktop_proxy/cpu.py``): a thread named for its stage
is counted there, and the encoder's threads with it, also once they ended."""

from __future__ import annotations

import threading
import time

from desktop_proxy.cpu import name_thread, stage_seconds


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_named_threads_cpu_and_its_childrens_count_for_its_stage_after_they_ended():
    def encoder():
        name_thread("hd-encode")
        child = threading.Thread(target=burn, args=(0.2,))  # as x264 starts its own threads
        child.start()
        burn(0.2)
        child.join()  # (and ends them when it opens again)
        started.set()
        done.wait()

    def capture():
        name_thread("hd-capture")
        burn(0.1)
        done.wait()

    started, done = threading.Event(), threading.Event()
    before = stage_seconds()
    threads = [threading.Thread(target=encoder), threading.Thread(target=capture)]
    for thread in threads:
        thread.start()
    started.wait(10)
    time.sleep(0.05)
    spent = {stage: seconds - before[stage] for stage, seconds in stage_seconds().items()}
    done.set()
    for thread in threads:
        thread.join()
    assert spent["encode"] >= 0.35, spent
    assert 0.05 <= spent["capture"] < 0.2 and spent["other"] < 0.1, spent

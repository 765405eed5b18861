"""Run Python in a user's JupyterLab through the Jupyter kernel protocol (REST + websocket),
with the user's API token: what a notebook cell does, without a browser."""

from __future__ import annotations

import json
import uuid

import requests
import websocket


def run_in_kernel(server_url: str, token: str, code: str, timeout: float = 60) -> str:
    """Start a kernel on ``server_url`` (e.g. http://127.0.0.1:8000/user/alice/), run
    ``code``, return what it printed; raise AssertionError with the traceback if it failed.
    The kernel is shut down afterwards."""
    headers = {"Authorization": f"token {token}"}
    base = server_url.rstrip("/")
    response = requests.post(f"{base}/api/kernels", headers=headers, json={"name": "python3"}, timeout=timeout)
    assert response.status_code == 201, (response.status_code, response.text[:300])
    kernel_id = response.json()["id"]
    try:
        ws = websocket.create_connection(f"ws{base[4:]}/api/kernels/{kernel_id}/channels",
                                         header=[f"Authorization: token {token}"], timeout=timeout)
        try:
            return _execute(ws, code)
        finally:
            ws.close()
    finally:
        requests.delete(f"{base}/api/kernels/{kernel_id}", headers=headers, timeout=timeout)


def _execute(ws, code: str) -> str:
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex,
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    output, error = [], None
    for _ in range(10_000):  # bounded: a kernel sends a handful of messages per cell
        message = json.loads(ws.recv())
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            output.append(content["text"])
        elif kind == "error":
            error = "\n".join(content.get("traceback") or [content.get("evalue", "")])
        elif kind == "status" and content.get("execution_state") == "idle":
            break
    if error is not None:
        raise AssertionError(f"the cell failed: {error}")
    return "".join(output)

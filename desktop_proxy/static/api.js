// Requests to the desktop's HTTP API, relative to this page (so under any JupyterHub prefix).
'use strict';

// The Jupyter server in front asks for its XSRF token on every request that changes something.
function xsrfHeaders() {
  const match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
  return match ? { 'X-XSRFToken': decodeURIComponent(match[1]) } : {};
}

class ApiError extends Error {
  constructor(message, status, kind) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

// ``body``: an object (sent as JSON), a Blob or bytes (with ``type``), or null. The answer's
// JSON, null for 204; an error answer throws an ApiError with the desktop's message.
async function api(method, url, body = null, { signal = undefined, type = 'application/json' } = {}) {
  const headers = { ...xsrfHeaders() };
  if (body !== null) headers['Content-Type'] = type;
  const isJson = body !== null && !(body instanceof Blob) && !ArrayBuffer.isView(body);
  const response = await fetch(url, { method, headers, signal, cache: 'no-store',
                                      body: isJson ? JSON.stringify(body) : body });
  if (!response.ok) {
    let answer = {};
    try { answer = await response.json(); } catch (e) { /* not JSON */ }
    throw new ApiError(answer.message || `HTTP ${response.status}`, response.status, answer.error || '');
  }
  return response.status === 204 ? null : response.json();
}

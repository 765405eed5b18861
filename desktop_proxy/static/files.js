// Files between this computer and the desktop (files.py), over HTTP: files dropped on the page
// or picked with the toolbar's button upload to the home, in chunks that resume after a network
// failure; files the desktop sends (hepsdesk-send, the file manager's "Send to my computer")
// download here. Each shows in the transfers list with a progress bar and a cancel button.
'use strict';

const desktopFiles = (() => {
  const list = document.getElementById('transfers');
  const dropTarget = document.getElementById('drop-target');
  const picker = document.getElementById('upload-input');
  const IN_MEMORY = 512 * 1024 * 1024;  // larger downloads go to the browser's own download manager
  const RETRIES = 8;
  const counts = { uploaded: 0, downloaded: 0, failed: 0, cancelled: 0 };

  function formatSize(size) {
    for (const [unit, scale] of [['GB', 2 ** 30], ['MB', 2 ** 20], ['KB', 2 ** 10]]) {
      if (size >= scale) return `${(size / scale).toFixed(1)} ${unit}`;
    }
    return `${size} bytes`;
  }

  // One line of the transfers list.
  function entry(direction, name, size, cancel) {
    const item = document.createElement('li');
    item.className = 'transfer';
    const label = document.createElement('span');
    label.className = 'name';
    label.textContent = `${direction === 'up' ? '\u2191' : '\u2193'} ${name}`;
    const bar = document.createElement('progress');
    bar.max = Math.max(1, size);
    bar.value = 0;
    bar.setAttribute('aria-label', `${direction === 'up' ? 'Uploading' : 'Downloading'} ${name}`);
    const text = document.createElement('span');
    text.className = 'status';
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = '\u00d7';
    button.title = 'Cancel';
    button.setAttribute('aria-label', `Cancel ${name}`);
    button.addEventListener('click', () => (item.finished ? item.remove() : cancel()));
    item.append(label, bar, text, button);
    list.append(item);
    list.hidden = false;
    const view = {
      element: item,
      progress(done) { bar.value = done; text.textContent = `${formatSize(done)} of ${formatSize(size)}`; },
      status(message) { text.textContent = message; },
      finish(message, kind) {
        item.finished = true;
        item.classList.add(kind);
        bar.value = kind === 'done' ? bar.max : bar.value;
        text.textContent = message;
        button.title = 'Close';
        button.setAttribute('aria-label', `Close ${name}`);
        if (kind === 'done') setTimeout(() => item.remove(), 15000);
      },
    };
    view.progress(0);
    return view;
  }

  // The network failed (no answer), a proxy between could not reach the desktop, or a chunk
  // raced a resent one: worth another try. The desktop's refusals are not.
  const retryable = (e) => !e.status || [502, 503, 504].includes(e.status) || e.kind === 'wrong-offset';

  const sleep = (ms, signal) => new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
  });

  async function upload(file, directory = null) {
    const controller = new AbortController();
    const signal = controller.signal;
    const view = entry('up', file.name, file.size, () => controller.abort(new DOMException('Cancelled', 'AbortError')));
    let state = null;
    try {
      state = await api('POST', 'api/files/uploads',
                        { name: file.name, size: file.size, ...(directory ? { directory } : {}) }, { signal });
      let failures = 0;
      let resync = false;  // after a failure: ask what arrived before sending more
      while (!state.done) {
        try {
          const offset = state.received;
          state = resync
            ? await api('GET', `api/files/uploads/${state.id}`, null, { signal })
            : await api('PUT', `api/files/uploads/${state.id}?offset=${offset}`,
                        file.slice(offset, Math.min(file.size, offset + state.chunk)),
                        { signal, type: 'application/octet-stream' });
          resync = false;
          failures = 0;
          view.progress(state.received);
        } catch (e) {
          if (e.name === 'AbortError' || !retryable(e)) throw e;
          failures += 1;
          if (failures > RETRIES) throw new Error('the connection failed again and again');
          view.status(`connection lost, retrying (${failures})\u2026`);
          await sleep(Math.min(15000, 250 * 2 ** failures), signal);
          resync = true;
        }
      }
      counts.uploaded += 1;
      view.finish(`saved as ${state.path}`, 'done');
      return state;
    } catch (e) {
      if (state && !state.done) {  // nothing half-written stays on the desktop
        api('DELETE', `api/files/uploads/${state.id}`).catch(() => {});
      }
      const cancelled = e.name === 'AbortError';
      counts[cancelled ? 'cancelled' : 'failed'] += 1;
      view.finish(cancelled ? 'cancelled' : `not uploaded: ${e.message}`, cancelled ? 'cancelled' : 'error');
      return null;
    }
  }

  async function download(offer) {
    if (offer.size > IN_MEMORY) {  // the browser's download manager shows this one
      save(offer.url, offer.name);
      return;
    }
    const controller = new AbortController();
    const view = entry('down', offer.name, offer.size, () => controller.abort(new DOMException('Cancelled', 'AbortError')));
    try {
      const response = await fetch(offer.url, { signal: controller.signal, cache: 'no-store' });
      if (!response.ok) {
        let message = `HTTP ${response.status}`;
        try { message = (await response.json()).message; } catch (e) { /* not JSON */ }
        throw new Error(message);
      }
      const reader = response.body.getReader();
      const chunks = [];
      let received = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        received += value.length;
        view.progress(received);
      }
      if (received !== offer.size) throw new Error('the download was cut short');
      const url = URL.createObjectURL(new Blob(chunks));
      save(url, offer.name);
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      counts.downloaded += 1;
      view.finish('downloaded', 'done');
    } catch (e) {
      const cancelled = e.name === 'AbortError';
      counts[cancelled ? 'cancelled' : 'failed'] += 1;
      view.finish(cancelled ? 'cancelled' : `not downloaded: ${e.message}`, cancelled ? 'cancelled' : 'error');
    }
  }

  function save(url, name) {
    const link = document.createElement('a');
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
  }

  // Dropping files anywhere on the page.
  let dragDepth = 0;
  const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes('Files');
  window.addEventListener('dragenter', (event) => {
    if (!hasFiles(event)) return;
    dragDepth += 1;
    dropTarget.hidden = false;
    event.preventDefault();
  });
  window.addEventListener('dragover', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
  });
  window.addEventListener('dragleave', () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) dropTarget.hidden = true;
  });
  window.addEventListener('drop', (event) => {
    dragDepth = 0;
    dropTarget.hidden = true;
    if (!hasFiles(event)) return;
    event.preventDefault();
    for (const file of event.dataTransfer.files) upload(file);
  });
  document.getElementById('upload-button').addEventListener('click', () => picker.click());
  picker.addEventListener('change', () => {
    for (const file of picker.files) upload(file);
    picker.value = '';
  });

  return { upload, download, get counts() { return { ...counts }; } };
})();

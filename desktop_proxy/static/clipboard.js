// The browser's clipboard, in step with the desktop's (clipboard.py): text and PNG images,
// both ways, with no side panel. What the desktop copies is put on the browser's clipboard at
// once (the page has focus: the person just pressed Ctrl+C in it); what the browser holds is
// sent to the desktop when the page gets focus, and on Ctrl+V before the key reaches the
// desktop. Where the browser refuses, a notice offers the same in one click.
'use strict';

const desktopClipboard = (() => {
  const notice = document.getElementById('notice');
  const noticeText = document.getElementById('notice-text');
  const noticeAction = document.getElementById('notice-action');
  let known = null;  // the digest of what both clipboards hold (the last thing passed either way)
  let canRead = Boolean(navigator.clipboard && navigator.clipboard.read);
  let offered = null;  // what the desktop copied and the browser would not take without a click
  const counts = { toDesktop: 0, fromDesktop: 0, refused: 0 };

  async function digestOf(kind, bytes) {
    if (!crypto.subtle) return null;  // not a secure context: compare nothing, send everything
    const prefix = new TextEncoder().encode(`${kind}\0`);
    const all = new Uint8Array(prefix.length + bytes.length);
    all.set(prefix);
    all.set(bytes, prefix.length);
    const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
    return Array.from(hash, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function showNotice(text, action = null, kind = '') {
    noticeText.textContent = text;
    noticeAction.hidden = !action;
    if (action) {
      noticeAction.textContent = action.label;
      noticeAction.onclick = () => { action.run().catch((e) => showNotice(String(e.message || e), null, 'error')); };
    }
    notice.className = kind;
    notice.hidden = false;
  }
  function hideNotice() { notice.hidden = true; }
  document.getElementById('notice-close').addEventListener('click', hideNotice);

  async function problem(response) {
    try { return (await response.json()).message; } catch (e) { return `HTTP ${response.status}`; }
  }

  async function asPng(blob) {
    if (blob.type === 'image/png') return blob;
    const bitmap = await createImageBitmap(blob);
    const canvas = document.createElement('canvas');
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext('2d').drawImage(bitmap, 0, 0);
    return new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
  }

  // Browser -> desktop.
  async function toDesktop(kind, blob) {
    if (kind === 'image') blob = await asPng(blob);
    const bytes = new Uint8Array(await blob.arrayBuffer());
    const digest = await digestOf(kind, bytes);
    if (digest !== null && digest === known) return;
    let answer;
    try {
      answer = await api('PUT', 'api/clipboard', bytes,
                         { type: kind === 'image' ? 'image/png' : 'text/plain;charset=utf-8' });
    } catch (e) {
      showNotice(`Not pasted into the desktop: ${e.message}.`, null, 'error');
      return;
    }
    known = answer.digest;
    counts.toDesktop += 1;
  }

  async function readBrowser() {
    const items = await navigator.clipboard.read();
    for (const item of items) {
      const image = item.types.find((type) => type.startsWith('image/'));
      if (image) return { kind: 'image', blob: await item.getType(image) };
    }
    for (const item of items) {
      if (item.types.includes('text/plain')) return { kind: 'text', blob: await item.getType('text/plain') };
    }
    return null;
  }

  // The page got focus, or the person asked: send what the browser's clipboard holds.
  async function fromBrowser(asked = false) {
    if (!canRead && !asked) return;
    let content;
    try {
      content = navigator.clipboard && navigator.clipboard.read ? await readBrowser() : null;
    } catch (e) {
      if (e.name === 'NotAllowedError' && !asked) {
        canRead = false;  // refused: Ctrl+V and the toolbar's button still paste
        counts.refused += 1;
      } else if (asked) {
        showNotice('This browser does not let the page read its clipboard. Press Ctrl+V in the desktop '
                   + 'instead.', null, 'error');
      }
      return;
    }
    if (content) await toDesktop(content.kind, content.blob);
  }

  // A paste event (Ctrl+V in the page): its data needs no permission.
  async function fromPasteEvent(event) {
    const data = event.clipboardData;
    if (!data) return;
    const file = [...data.items].find((item) => item.kind === 'file' && item.type.startsWith('image/'));
    if (file) return toDesktop('image', file.getAsFile());
    const text = data.getData('text/plain');
    if (text) return toDesktop('text', new Blob([text], { type: 'text/plain' }));
  }

  // Desktop -> browser.
  async function writeBrowser(kind, blob) {
    if (kind === 'text') await navigator.clipboard.writeText(await blob.text());
    else await navigator.clipboard.write([new ClipboardItem({ 'image/png': blob })]);
  }

  async function fromDesktop(message) {
    if (message.error) {
      showNotice(`Copied on the desktop, but not to this computer: ${message.message}.`, null, 'error');
      return;
    }
    if (message.digest === known) return;
    const response = await fetch('api/clipboard', { cache: 'no-store' });
    if (response.status !== 200) {
      if (response.status !== 204) showNotice(`Not copied to this computer: ${await problem(response)}.`, null, 'error');
      return;
    }
    const blob = await response.blob();
    const kind = blob.type.startsWith('image/') ? 'image' : 'text';
    const copied = async () => {
      await writeBrowser(kind, blob);
      known = message.digest;
      offered = null;
      counts.fromDesktop += 1;
      hideNotice();
    };
    try {
      await copied();
    } catch (e) {
      // No focus, no permission, or no images on this browser's clipboard: one click does it
      // (a click is the permission browsers ask for); if even that fails, the image can be saved.
      offered = { kind, blob };
      showNotice(kind === 'image' ? 'The desktop copied an image.' : 'The desktop copied some text.',
                 { label: 'Copy to this computer', run: () => copied().catch((error) => offerSave(kind, blob, error)) });
    }
  }

  function offerSave(kind, blob, error) {
    if (kind !== 'image') throw error;
    showNotice('This browser cannot put images on its clipboard.', {
      label: 'Save the image', run: async () => {
        const link = document.createElement('a');
        link.href = URL.createObjectURL(blob);
        link.download = 'desktop-clipboard.png';
        link.click();
        setTimeout(() => URL.revokeObjectURL(link.href), 10000);
        hideNotice();
      },
    });
  }

  window.addEventListener('focus', () => { fromBrowser().catch(() => {}); });
  document.getElementById('paste-button').addEventListener('click', () => {
    fromBrowser(true).catch((e) => showNotice(String(e.message || e), null, 'error'));
  });

  return {
    fromDesktop, fromBrowser, fromPasteEvent, showNotice, hideNotice,
    get offered() { return offered; },
    get counts() { return { ...counts, canRead }; },
  };
})();

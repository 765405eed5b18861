// The browser side of the hepsdesk desktop: WebRTC video of the VM's screen, and mouse and
// keyboard back over a data channel. Signalling goes through the (authenticated) websocket
// at ./ws, relative to this page, so it works under any JupyterHub prefix. The same page is
// a guest's view of a shared desktop (data-role="viewer", served by the hub's relay): the
// picture, and input only while the owner has handed over control (sharing.js).
'use strict';

const PROTOCOL = 1;
const OWNER = desktopSharing.OWNER;
const video = document.getElementById('screen');
const keyboard = document.getElementById('keyboard');  // takes keys and input methods' text
const composition = document.getElementById('composition');
const TEXT_CHUNK = 128;  // characters per text message (messages.TEXT_CHUNK)
const statusBox = document.getElementById('status');
const sound = document.getElementById('sound');  // muted until the person unmutes it
const soundButton = document.getElementById('sound-button');
let pc = null;
let channel = null;
const pending = [];  // input sent before the data channel opened
const pressed = new Map();  // KeyboardEvent.code -> keysym sent on keydown
let firstFrameAt = null;  // when the first video frame was shown (ms since the epoch)
// When the first connection passed each stage (ms since the epoch): for benchmarks that ask
// where a start's time goes (benchmarks/spawn_e2e.py).
const timeline = {};
function mark(stage) {
  if (!(stage in timeline)) timeline[stage] = performance.timeOrigin + performance.now();
}
let ws = null;
let ended = null;  // why this page was disconnected for good (a guest removed, a share revoked)
let desktopSize = null;  // the size the desktop last took: {width, height}

function setStatus(text, kind = '') {
  statusBox.textContent = text;
  statusBox.className = kind;
}

function send(message) {
  if (!desktopSharing.mayType()) return;  // a guest without control (the desktop drops it too)
  if (pasteKey) {  // input waits for the paste before it, to keep its order
    if (afterPaste.length < 1000) afterPaste.push(message);
    return;
  }
  const data = JSON.stringify({ v: PROTOCOL, ...message });
  if (channel && channel.readyState === 'open') {
    channel.send(data);
  } else if (pending.length < 1000) {
    pending.push(data);
  }
}

function preferH264(transceiver) {
  if (!RTCRtpReceiver.getCapabilities || !transceiver.setCodecPreferences) return;
  const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
  const rank = (c) => (c.mimeType === 'video/H264' ? (/packetization-mode=1/.test(c.sdpFmtpLine || '') ? 0 : 1) : 2);
  transceiver.setCodecPreferences([...codecs].sort((a, b) => rank(a) - rank(b)));
}

function gatheringComplete(peer, timeoutMs) {
  if (peer.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { peer.removeEventListener('icegatheringstatechange', check); resolve(); };
    const check = () => { if (peer.iceGatheringState === 'complete') done(); };
    peer.addEventListener('icegatheringstatechange', check);
    setTimeout(done, timeoutMs);
  });
}

async function startPeer(socket, ice) {
  // STUN/TURN servers from the desktop (TURN credentials made for this session).
  const peer = new RTCPeerConnection({ iceServers: ice.iceServers || [],
                                       iceTransportPolicy: ice.iceTransportPolicy || 'all' });
  pc = peer;
  preferH264(peer.addTransceiver('video', { direction: 'recvonly' }));
  if (OWNER) peer.addTransceiver('audio', { direction: 'recvonly' });  // the desktop's sound (Opus)
  channel = peer.createDataChannel('input', { ordered: true });
  channel.onopen = () => { while (pending.length) channel.send(pending.shift()); };
  peer.ontrack = (event) => {
    if (event.track.kind === 'audio') {
      sound.srcObject = new MediaStream([event.track]);
      sound.play().catch(() => {});  // muted: browsers let it play
      return;
    }
    video.srcObject = new MediaStream([event.track]);
    focusKeyboard();
    if (video.requestVideoFrameCallback) {
      video.requestVideoFrameCallback(() => {
        const now = performance.timeOrigin + performance.now();
        if (firstFrameAt === null) firstFrameAt = now;
        mark('frame');
        resumed(now);
      });
    }
  };
  peer.onconnectionstatechange = () => {
    if (peer !== pc || ended) return;  // an earlier connection, being replaced; or the end
    if (peer.connectionState === 'connected') {
      mark('connected');
      setStatus('Connected', 'connected');
      reconnects = 0;
    } else if (peer.connectionState === 'disconnected' || peer.connectionState === 'failed') {
      connectionLost(`the video connection is ${peer.connectionState}`);
    }
  };
  // A TURN server that refuses the session's credentials (401) or cannot be reached: say so,
  // since with relay-only ICE no media can flow at all.
  let relayed = false;
  pc.onicecandidate = (event) => { if (event.candidate && event.candidate.type === 'relay') relayed = true; };
  pc.onicecandidateerror = (event) => {
    if (event.errorCode === 401 && /^turns?:/.test(event.url || '')) {
      setStatus('The relay server (TURN) refused this desktop\'s credentials. '
                + 'Ask the facility\'s administrators to check the desktop\'s TURN secret.', 'error');
    }
  };
  await peer.setLocalDescription(await peer.createOffer());
  await gatheringComplete(peer, 3000);
  mark('gathered');
  if (ice.iceTransportPolicy === 'relay' && !relayed && statusBox.className !== 'error') {
    setStatus('The relay server (TURN) could not be reached, and this desktop sends its picture only '
              + 'through it. Ask the facility\'s administrators to check the TURN server.', 'error');
  }
  socket.send(JSON.stringify({ type: 'offer', sdp: peer.localDescription.sdp }));
}

// Reconnecting: a reload starts afresh; a lost connection (the peer connection disconnected
// or failed, the websocket closed) is replaced at once, then with backoff, by a new websocket
// and a new peer connection (aiortc has no ICE restart; the desktop mints fresh TURN
// credentials for each). The desktop and its windows stay as they were.
let reconnects = 0;  // attempts since the last good connection
let reconnectTimer = null;
let attemptTimer = null;
const outages = [];  // {noticedAt, resumedAt, why}: for the curious, tests and benchmarks

function connectionLost(why) {
  if (reconnectTimer) return;  // already on it
  clearTimeout(attemptTimer);
  const last = outages[outages.length - 1];
  if (!last || last.resumedAt !== null) {
    outages.push({ noticedAt: performance.timeOrigin + performance.now(), resumedAt: null, why });
    if (outages.length > 100) outages.shift();
  }
  setStatus('Reconnecting to your desktop\u2026', 'reconnecting');
  const delay = reconnects === 0 ? 0 : Math.min(8000, 250 * 2 ** reconnects);
  reconnects += 1;
  reconnectTimer = setTimeout(() => {
    reconnectTimer = null;
    reconnect();
  }, delay);
}

function reconnect() {
  const old = pc;
  pc = null;
  channel = null;
  if (old) old.close();
  if (ws) {
    ws.onclose = null;
    ws.close();
  }
  connect();
  // An attempt that has not brought the picture back within 5 s is replaced by the next one.
  attemptTimer = setTimeout(() => {
    if (!pc || pc.connectionState !== 'connected') connectionLost('no connection within 5 s');
  }, 5000);
}

function resumed(at) {
  const last = outages[outages.length - 1];
  if (last && last.resumedAt === null) {
    last.resumedAt = at;
    clearTimeout(attemptTimer);
  }
}

// The desktop follows the window, in device pixels (sharp on HiDPI screens; the desktop's
// font resolution follows devicePixelRatio, so text keeps its size).
function requestResize() {
  if (!OWNER || !ws || ws.readyState !== WebSocket.OPEN) return;  // a guest sees the owner's size
  const scale = window.devicePixelRatio || 1;
  ws.send(JSON.stringify({ type: 'resize', width: Math.round(window.innerWidth * scale),
                           height: Math.round(window.innerHeight * scale), scale }));
}
let resizeTimer = null;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(requestResize, 250);  // once the user stops dragging
});

function connect() {
  const url = new URL('ws', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  ws = new WebSocket(url);
  ws.onopen = () => {
    mark('websocket');
    if (!OWNER) return;
    requestResize();
    ws.send(JSON.stringify({ type: 'preset', name: savedPreset() }));
    sendLayout();
  };
  ws.onmessage = async (event) => {
    const message = JSON.parse(event.data);
    if (desktopSharing.handle(message)) return;
    if (message.type === 'ice') {  // the desktop's first message
      mark('ice');
      startPeer(ws, message).catch((e) => setStatus(`Cannot start the video: ${e}`, 'error'));
    } else if (message.type === 'answer') {
      mark('answer');
      await pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
    } else if (message.type === 'resized' || message.type === 'resize-failed') {
      desktopSize = { width: message.width, height: message.height };
    } else if (message.type === 'preset') {
      preset = message.name;
      const radio = settings.querySelector(`input[name=preset][value="${message.name}"]`);
      if (radio) radio.checked = true;
    } else if (message.type === 'clipboard') {  // a program on the desktop copied something
      desktopClipboard.fromDesktop(message).catch((e) => setStatus(`Clipboard: ${e}`, 'error'));
    } else if (message.type === 'layout') {
      layout = message.name;
    } else if (message.type === 'file-offer') {  // hepsdesk-send: the desktop sends a file
      desktopFiles.download(message);
    } else if (message.type === 'waiting') {  // a support person, until the owner lets them in
      setStatus(message.message);
    } else if (message.type === 'ended') {  // the owner removed this guest or ended sharing
      ended = message.message;
      setStatus(message.message, 'error');
    } else if (message.type === 'error') {
      setStatus(`The desktop cannot stream: ${message.message}`, 'error');
    }
  };
  ws.onclose = (event) => {
    if (event.code === 4403 || ended) {  // the desktop (or the hub's relay) refused this page for good
      ended = ended || event.reason || 'disconnected';
      setStatus(OWNER ? `Disconnected from your desktop: ${ended}` : ended, 'error');
      if (pc) pc.close();
      return;
    }
    connectionLost('the signalling connection closed');
  };
}

// The desktop takes the browser's keyboard layout, where the browser tells it (Chromium's
// Keyboard Map API), so programs that read key codes find the keys where the keyboard has them.
let layout = null;  // the layout the desktop confirmed
async function sendLayout() {
  if (!navigator.keyboard || !navigator.keyboard.getLayoutMap) return;
  try {
    const name = layoutOf(await navigator.keyboard.getLayoutMap());
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'layout', name }));
  } catch (e) { /* not allowed here (a frame without keyboard-map): keysyms still type right */ }
}
navigator.keyboard && navigator.keyboard.addEventListener && navigator.keyboard.addEventListener('layoutchange', sendLayout);

// Pointer position as a fraction of the picture (the video is letterboxed by object-fit).
function position(event) {
  const rect = video.getBoundingClientRect();
  const width = video.videoWidth || rect.width;
  const height = video.videoHeight || rect.height;
  const scale = Math.min(rect.width / width, rect.height / height);
  const left = rect.left + (rect.width - width * scale) / 2;
  const top = rect.top + (rect.height - height * scale) / 2;
  return {
    x: Math.min(1, Math.max(0, (event.clientX - left) / (width * scale))),
    y: Math.min(1, Math.max(0, (event.clientY - top) / (height * scale))),
  };
}

let pendingMove = null;
let pendingMotion = null;  // relative motion while the pointer is locked
const scale = () => {  // desktop pixels per CSS pixel of the picture
  const rect = video.getBoundingClientRect();
  const width = video.videoWidth || rect.width;
  const height = video.videoHeight || rect.height;
  return 1 / Math.min(rect.width / width, rect.height / height);  // the rectangle is zoomed already
};
video.addEventListener('pointermove', (event) => {
  if (event.pointerType === 'touch') return;  // touch.js-like handling below
  if (document.pointerLockElement === video) {
    if (!pendingMotion) {
      pendingMotion = { dx: 0, dy: 0 };
      requestAnimationFrame(() => {
        const { dx, dy } = pendingMotion;
        pendingMotion = null;
        const factor = scale();
        const clamp = (v) => Math.max(-4096, Math.min(4096, Math.round(v * factor)));
        if (dx || dy) send({ type: 'motion', dx: clamp(dx), dy: clamp(dy) });
      });
    }
    pendingMotion.dx += event.movementX;
    pendingMotion.dy += event.movementY;
    return;
  }
  if (!pendingMove) requestAnimationFrame(() => { send({ type: 'pointer', ...pendingMove }); pendingMove = null; });
  pendingMove = position(event);
});
video.addEventListener('pointerdown', (event) => {
  focusKeyboard();
  if (event.pointerType === 'touch') return;
  if (document.pointerLockElement !== video) send({ type: 'pointer', ...position(event) });
  send({ type: 'button', button: event.button, down: true });
  event.preventDefault();
});
video.addEventListener('pointerup', (event) => {
  if (event.pointerType === 'touch') return;
  if (document.pointerLockElement !== video) send({ type: 'pointer', ...position(event) });
  send({ type: 'button', button: event.button, down: false });
  event.preventDefault();
});

// The wheel: smooth scrolling (touchpads, high-resolution wheels) adds up to clicks, one per
// WHEEL_STEP pixels, as X applications know scrolling.
const WHEEL_STEP = 50;
const wheelSum = { x: 0, y: 0 };
function scrollBy(dxPixels, dyPixels) {
  wheelSum.x += dxPixels;
  wheelSum.y += dyPixels;
  const dx = Math.trunc(wheelSum.x / WHEEL_STEP);
  const dy = Math.trunc(wheelSum.y / WHEEL_STEP);
  if (dx || dy) {
    wheelSum.x -= dx * WHEEL_STEP;
    wheelSum.y -= dy * WHEEL_STEP;
    send({ type: 'wheel', dx: Math.max(-100, Math.min(100, dx)), dy: Math.max(-100, Math.min(100, dy)) });
  }
}
video.addEventListener('wheel', (event) => {
  const unit = [1, WHEEL_STEP / 3, window.innerHeight][event.deltaMode] || 1;  // pixels, lines, pages
  scrollBy(event.deltaX * unit, event.deltaY * unit);
  event.preventDefault();
}, { passive: false });

// Touch (tablets): one finger taps and drags as the left button; two fingers scroll, and
// pinching zooms the picture here (not the desktop), around the fingers.
const touches = new Map();  // pointerId -> {x, y}
const zoom = { scale: 1, x: 0, y: 0 };
let gesture = null;  // {distance, centre} of the two fingers
let touchButton = false;
function showZoom() {
  video.style.transformOrigin = '0 0';
  video.style.transform = zoom.scale === 1 ? '' : `translate(${zoom.x}px, ${zoom.y}px) scale(${zoom.scale})`;
}
function twoFingers() {
  const [a, b] = [...touches.values()];
  return { distance: Math.hypot(a.x - b.x, a.y - b.y), centre: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 } };
}
// A finger that stays put for TOUCH_HOLD ms, or moves, presses the button; a second finger
// before then makes a gesture, and no click.
const TOUCH_HOLD = 150;
const TOUCH_SLOP = 8;  // CSS pixels a finger may wander and still tap
let pendingPress = null;  // {event, timer} of the first finger, not pressed yet
function pressNow() {
  if (!pendingPress) return;
  clearTimeout(pendingPress.timer);
  send({ type: 'pointer', ...position(pendingPress.event) });
  send({ type: 'button', button: 0, down: true });
  touchButton = true;
  pendingPress = null;
}
video.addEventListener('pointerdown', (event) => {
  if (event.pointerType !== 'touch') return;
  touches.set(event.pointerId, { x: event.clientX, y: event.clientY });
  if (touches.size === 1) {
    const start = { clientX: event.clientX, clientY: event.clientY };
    pendingPress = { event: start, timer: setTimeout(pressNow, TOUCH_HOLD) };
  } else if (touches.size === 2) {
    if (pendingPress) {
      clearTimeout(pendingPress.timer);
      pendingPress = null;
    }
    if (touchButton) {  // a press already made: let it go
      send({ type: 'button', button: 0, down: false });
      touchButton = false;
    }
    gesture = twoFingers();
  }
  event.preventDefault();
});
video.addEventListener('pointermove', (event) => {
  if (event.pointerType !== 'touch' || !touches.has(event.pointerId)) return;
  touches.set(event.pointerId, { x: event.clientX, y: event.clientY });
  if (touches.size === 1) {
    if (pendingPress && Math.hypot(event.clientX - pendingPress.event.clientX,
                                   event.clientY - pendingPress.event.clientY) > TOUCH_SLOP) {
      pressNow();  // a drag
    }
    if (touchButton) send({ type: 'pointer', ...position(event) });
  } else if (touches.size === 2 && gesture) {
    const now = twoFingers();
    scrollBy(0, gesture.centre.y - now.centre.y);  // fingers up: content up, as on a phone
    const factor = Math.min(4, Math.max(1, zoom.scale * (now.distance / gesture.distance))) / zoom.scale;
    zoom.x = now.centre.x - (gesture.centre.x - zoom.x) * factor;
    zoom.y = now.centre.y - (gesture.centre.y - zoom.y) * factor;
    zoom.scale *= factor;
    if (zoom.scale === 1) { zoom.x = 0; zoom.y = 0; }
    showZoom();
    gesture = now;
  }
  event.preventDefault();
});
function touchEnded(event) {
  if (event.pointerType !== 'touch' || !touches.has(event.pointerId)) return;
  touches.delete(event.pointerId);
  if (touches.size === 0 && pendingPress) pressNow();  // a tap
  if (touchButton && touches.size === 0) {
    send({ type: 'pointer', ...position(event) });
    send({ type: 'button', button: 0, down: false });
    touchButton = false;
  }
  if (touches.size < 2) gesture = null;
  event.preventDefault();
}
video.addEventListener('pointerup', touchEnded);
video.addEventListener('pointercancel', touchEnded);

// Fullscreen keeps Ctrl+W, Alt+Tab and the like for the desktop (the Keyboard Lock API, where
// the browser has it); the pointer can be locked for 3D views (relative motion).
const fullscreenButton = document.getElementById('fullscreen-button');
fullscreenButton.addEventListener('click', async () => {
  if (document.fullscreenElement) {
    await document.exitFullscreen();
    return;
  }
  try {
    await document.documentElement.requestFullscreen({ navigationUI: 'hide' });
  } catch (e) {
    setStatus(`Full screen refused: ${e.message}`, 'error');
  }
  focusKeyboard();
});
document.addEventListener('fullscreenchange', () => {
  if (!navigator.keyboard || !navigator.keyboard.lock) return;
  if (document.fullscreenElement) {
    navigator.keyboard.lock().catch(() => {});  // all keys, Escape held down leaves
  } else {
    navigator.keyboard.unlock();
  }
});
document.getElementById('pointer-lock-button').addEventListener('click', () => {
  const request = video.requestPointerLock({ unadjustedMovement: true });
  if (request && request.catch) {
    request.catch(() => video.requestPointerLock());  // unadjusted movement is not offered everywhere
  }
});
document.addEventListener('pointerlockchange', () => {
  focusKeyboard();
  setStatus(document.pointerLockElement === video ? 'Pointer locked: press Escape to release it' : 'Connected',
            document.pointerLockElement === video ? '' : 'connected');
});
video.addEventListener('contextmenu', (event) => event.preventDefault());

// Sound: muted until asked (a click, which is also what browsers want before they play sound).
function showSound() {
  soundButton.textContent = sound.muted ? '\u{1F507}' : '\u{1F50A}';
  const label = sound.muted ? 'Unmute the desktop\'s sound' : 'Mute the desktop\'s sound';
  soundButton.title = label;
  soundButton.setAttribute('aria-label', label);
  soundButton.setAttribute('aria-pressed', String(!sound.muted));
}
if (OWNER) soundButton.addEventListener('click', () => {
  sound.muted = !sound.muted;
  if (!sound.muted) sound.play().catch((e) => setStatus(`The browser would not play the sound: ${e.message}`, 'error'));
  showSound();
  focusKeyboard();
});
if (OWNER) showSound();

function focusKeyboard() {
  keyboard.focus({ preventScroll: true });
}

// Ctrl+V: the browser pastes into the hidden field first, so that what its clipboard holds is
// on the desktop's before the key gets there (a paste event needs no permission).
let pasteKey = null;  // {code, keysym, up} while what it pastes is sent
let pasteTimer = null;
const afterPaste = [];  // input that came meanwhile
function isPaste(event) {
  return (event.ctrlKey || event.metaKey) && !event.altKey && event.key.toLowerCase() === 'v';
}
function finishPaste() {
  clearTimeout(pasteTimer);
  if (!pasteKey) return;
  const key = pasteKey;
  pasteKey = null;
  send({ type: 'key', keysym: key.keysym, down: true });
  if (key.up) send({ type: 'key', keysym: key.keysym, down: false });
  else pressed.set(key.code, key.keysym);
  for (const message of afterPaste.splice(0)) send(message);
}
keyboard.addEventListener('paste', (event) => {
  event.preventDefault();  // nothing stays in the field
  if (!OWNER) return;  // a guest has no clipboard on the desktop
  desktopClipboard.fromPasteEvent(event).catch(() => {}).finally(finishPaste);
});

// Keys become keysyms (the character the browser reports, so any layout types what its keys
// say). A key an input method is composing with is left to it: its text comes as text.
keyboard.addEventListener('keydown', (event) => {
  if (event.isComposing || event.keyCode === 229) return;
  const keysym = keysymFor(event);
  if (keysym === null) return;
  if (OWNER && isPaste(event) && !pasteKey) {
    pasteKey = { code: event.code, keysym, up: false };
    pasteTimer = setTimeout(finishPaste, 1000);  // in case no paste event comes
    return;  // not prevented: the browser pastes
  }
  pressed.set(event.code, keysym);
  send({ type: 'key', keysym, down: true });
  event.preventDefault();
});
keyboard.addEventListener('keyup', (event) => {
  if (event.isComposing) return;
  if (pasteKey && event.code === pasteKey.code) {
    pasteKey.up = true;
    event.preventDefault();
    return;
  }
  const keysym = pressed.get(event.code) ?? keysymFor(event);
  pressed.delete(event.code);
  if (keysym === null) return;
  send({ type: 'key', keysym, down: false });
  event.preventDefault();
});

// Text: what an input method commits, an on-screen keyboard types or the browser inserts.
function sendText(text) {
  const chars = [...text];
  for (let i = 0; i < chars.length; i += TEXT_CHUNK) {
    send({ type: 'text', text: chars.slice(i, i + TEXT_CHUNK).join('') });
  }
}
function takeText() {
  const text = keyboard.value;
  keyboard.value = '';
  if (text) sendText(text);
}
keyboard.addEventListener('compositionupdate', (event) => {
  composition.textContent = event.data;  // shown while it is composed, as the input method has it
  composition.hidden = !event.data;
});
keyboard.addEventListener('compositionend', () => {
  composition.hidden = true;
  takeText();
});
keyboard.addEventListener('input', (event) => {
  if (!event.isComposing) takeText();
});
window.addEventListener('blur', () => { pressed.clear(); send({ type: 'release-all' }); });
window.addEventListener('focus', focusKeyboard);

// Quality presets (the server applies them to every viewer) and the statistics overlay.
const settingsButton = document.getElementById('settings-button');
const settings = document.getElementById('settings');
const statsBox = document.getElementById('stats');
const showStats = document.getElementById('show-stats');
let preset = null;  // the preset the server confirmed

function savedPreset() {
  try { return localStorage.getItem('hepsdesk.preset') || 'auto'; } catch (e) { return 'auto'; }
}

settingsButton.addEventListener('click', () => {
  settings.hidden = !settings.hidden;
  settingsButton.setAttribute('aria-expanded', String(!settings.hidden));
});
settings.addEventListener('change', (event) => {
  if (event.target.name === 'preset') {
    try { localStorage.setItem('hepsdesk.preset', event.target.value); } catch (e) { /* private mode */ }
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'preset', name: event.target.value }));
  } else if (event.target === showStats) {
    statsBox.hidden = !showStats.checked;
    try { localStorage.setItem('hepsdesk.stats', showStats.checked ? '1' : ''); } catch (e) { /* private mode */ }
  }
});
try { showStats.checked = Boolean(localStorage.getItem('hepsdesk.stats')); } catch (e) { /* private mode */ }
statsBox.hidden = !showStats.checked;

// Frame rate, round-trip time, bitrate and decode time, from the browser's WebRTC stats,
// over the last second.
let previous = null;
let overlay = null;
async function sampleStats() {
  if (!pc) return;
  const report = await pc.getStats();
  let inbound = null;
  let pair = null;
  for (const stat of report.values()) {
    if (stat.type === 'inbound-rtp' && stat.kind === 'video') inbound = stat;
    if (stat.type === 'candidate-pair' && stat.nominated && stat.state === 'succeeded') pair = stat;
  }
  if (!inbound) return;
  const now = { t: inbound.timestamp, bytes: inbound.bytesReceived || 0, frames: inbound.framesDecoded || 0,
                decode: inbound.totalDecodeTime || 0, jitter: inbound.jitterBufferDelay || 0,
                emitted: inbound.jitterBufferEmittedCount || 0 };
  if (previous && now.t > previous.t) {
    const seconds = (now.t - previous.t) / 1000;
    const frames = now.frames - previous.frames;
    const codec = inbound.codecId && report.get(inbound.codecId);
    overlay = {
      fps: frames / seconds,
      rttMs: pair && pair.currentRoundTripTime !== undefined ? pair.currentRoundTripTime * 1000 : null,
      mbps: ((now.bytes - previous.bytes) * 8) / seconds / 1e6,
      decodeMs: frames ? ((now.decode - previous.decode) / frames) * 1000 : null,
      jitterBufferMs: now.emitted > previous.emitted
        ? ((now.jitter - previous.jitter) / (now.emitted - previous.emitted)) * 1000 : null,
      width: inbound.frameWidth, height: inbound.frameHeight, codec: codec ? codec.mimeType.split('/')[1] : '',
      lost: inbound.packetsLost || 0, preset,
    };
    if (!statsBox.hidden) statsBox.textContent = formatStats(overlay);
  }
  previous = now;
}
function formatStats(o) {
  const ms = (v) => (v === null ? '–' : `${v.toFixed(1)} ms`);
  return [`${o.fps.toFixed(0)} fps  ${o.width || '?'}x${o.height || '?'} ${o.codec}`,
          `round trip ${ms(o.rttMs)}   decode ${ms(o.decodeMs)}`,
          `${o.mbps.toFixed(2)} Mbit/s   jitter buffer ${ms(o.jitterBufferMs)}`,
          `packets lost ${o.lost}   preset ${o.preset || '…'}`].join('\n');
}
setInterval(() => { sampleStats().catch(() => {}); }, 1000);

// For tests and benchmarks: what the browser's WebRTC stack reports.
window.hepsdesk = {
  async stats() {
    if (!pc) return null;
    const report = await pc.getStats();
    for (const stat of report.values()) {
      if (stat.type === 'inbound-rtp' && stat.kind === 'video') {
        const codec = stat.codecId && report.get(stat.codecId);
        return { framesDecoded: stat.framesDecoded || 0, framesReceived: stat.framesReceived || 0,
                 frameWidth: stat.frameWidth, frameHeight: stat.frameHeight,
                 codec: codec ? codec.mimeType : null };
      }
    }
    return { framesDecoded: 0, framesReceived: 0 };
  },
  get pc() { return pc; },
  get connectionState() { return pc ? pc.connectionState : 'new'; },
  get desktopSize() { return desktopSize; },
  get overlay() { return overlay; },
  get preset() { return preset; },
  get firstFrameAt() { return firstFrameAt; },
  get timeline() { return { ...timeline }; },
  get outages() { return outages.map((o) => ({ ...o })); },
  get sound() { return sound; },
  get zoom() { return { ...zoom }; },
  get layout() { return layout; },
  get inputReady() { return Boolean(channel && channel.readyState === 'open'); },
  get inputChannel() { return channel; },
  get clipboard() { return OWNER ? desktopClipboard.counts : null; },
  get files() { return OWNER ? desktopFiles.counts : null; },
  get sharing() { return desktopSharing.state; },
  get notices() { return desktopSharing.notices; },
  get ended() { return ended; },
};

desktopSharing.connectTo(() => ws);
connect();

// Sharing: who is on the desktop and who has control. The owner sees everyone, gives control
// to one guest and takes it back (a button, or Ctrl+Alt+Shift+T), lets in or refuses support
// staff who ask to join; a guest sees the same list and may ask for control. The desktop
// (sharing.py) decides; this page shows and asks. Names are set as text, never as HTML.
'use strict';

const desktopSharing = (() => {
  const OWNER = document.body.dataset.role !== 'viewer';
  const ownerName = document.body.dataset.owner || '';
  const button = document.getElementById('people-button');
  const count = document.getElementById('people-count');
  const panel = document.getElementById('people');
  const list = document.getElementById('people-list');
  const notices = document.getElementById('share-notices');
  const banner = document.getElementById('share-banner');
  const bannerText = document.getElementById('share-text');
  const askButton = document.getElementById('ask-control-button');
  const takeButton = document.getElementById('take-control-button');
  const endButton = document.getElementById('end-sharing-button');
  let state = { you: null, control: null, participants: [] };
  let socket = () => null;
  const seen = [];  // notices, for tests and the curious

  function post(message) {
    const ws = socket();
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }

  function notice(text) {
    seen.push(text);
    if (seen.length > 100) seen.shift();
    const item = document.createElement('li');
    item.textContent = text;
    notices.append(item);
    while (notices.children.length > 5) notices.firstChild.remove();
    setTimeout(() => item.remove(), 8000);
  }

  function action(label, message) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.addEventListener('click', () => post(message));
    return b;
  }

  function describe(p) {
    const bits = [];
    if (p.id === state.you) bits.push('you');
    if (p.role === 'owner') bits.push('owner');
    if (p.role === 'support') bits.push('support');
    if (p.id === state.control) bits.push('has control');
    if (p.waiting) bits.push('asks to join');
    if (p.asking) bits.push('asks for control');
    return bits.length ? ` (${bits.join(', ')})` : '';
  }

  function render() {
    // The owner's several tabs are one person to the others.
    const people = state.participants.filter((p, i, all) => p.role !== 'owner' || p.id === state.you
                                               || all.findIndex((q) => q.role === 'owner') === i);
    list.replaceChildren(...people.map((p) => {
      const item = document.createElement('li');
      item.className = 'participant';
      item.dataset.id = p.id;
      item.dataset.name = p.name;
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = p.name + describe(p);
      item.append(name);
      if (OWNER && p.role !== 'owner') {
        if (p.waiting) {
          item.append(action('Let in', { type: 'admit', id: p.id, accept: true }),
                      action('Refuse', { type: 'admit', id: p.id, accept: false }));
        } else if (p.id === state.control) {
          item.append(action('Take back control', { type: 'take-control' }));
        } else {
          item.append(action('Give control', { type: 'give-control', id: p.id }));
        }
        if (!p.waiting) item.append(action('Remove', { type: 'remove', id: p.id }));
      }
      return item;
    }));
    const guests = state.participants.filter((p) => p.role !== 'owner' && !p.waiting);
    count.textContent = guests.length ? String(guests.length + 1) : '';
    const holder = state.participants.find((p) => p.id === state.control);
    if (OWNER) {
      banner.hidden = guests.length === 0;
      bannerText.textContent = guests.length === 0 ? ''
        : `Shared with ${guests.map((p) => p.name).join(', ')}${holder ? ` \u00b7 ${holder.name} has control` : ''}`;
      takeButton.hidden = !holder;
      if (endButton) endButton.hidden = guests.length === 0;
      if (state.participants.some((p) => p.waiting || p.asking)) open(true);  // a request wants an answer
    } else {
      banner.hidden = state.you === null;
      const mine = state.control !== null && state.control === state.you;
      const me = state.participants.find((p) => p.id === state.you);
      bannerText.textContent = mine ? `You have control of ${ownerName}'s desktop`
        : `You are watching ${ownerName}'s desktop${holder ? ` \u00b7 ${holder.name} has control` : ''}`;
      askButton.hidden = mine;
      askButton.disabled = Boolean(me && me.asking);
      askButton.textContent = me && me.asking ? 'Control asked for\u2026' : 'Ask for control';
    }
  }

  function open(show) {
    panel.hidden = !show;
    button.setAttribute('aria-expanded', String(show));
  }

  button.addEventListener('click', () => open(panel.hidden));
  askButton.addEventListener('click', () => post({ type: 'ask-control' }));
  takeButton.addEventListener('click', () => post({ type: 'take-control' }));
  if (endButton) endButton.addEventListener('click', () => post({ type: 'end-sharing' }));
  // The owner's shortcut, wherever the focus is, before the desktop gets the key.
  const isTakeBack = (event) => OWNER && event.ctrlKey && event.altKey && event.shiftKey && event.code === 'KeyT';
  window.addEventListener('keydown', (event) => {
    if (!isTakeBack(event)) return;
    post({ type: 'take-control' });
    event.preventDefault();
    event.stopImmediatePropagation();
  }, true);
  window.addEventListener('keyup', (event) => {
    if (isTakeBack(event)) event.stopImmediatePropagation();  // nor its release
  }, true);

  return {
    OWNER,
    connectTo(getSocket) { socket = getSocket; },
    // A message from the desktop about sharing: true when it was one.
    handle(message) {
      if (message.type === 'participants') {
        state = { you: message.you, control: message.control, participants: message.participants };
        render();
      } else if (message.type === 'notice') {
        notice(message.text);
      } else {
        return false;
      }
      return true;
    },
    // Whether this page's input reaches the desktop (the desktop checks it too).
    mayType() { return OWNER || (state.control !== null && state.control === state.you); },
    get state() { return JSON.parse(JSON.stringify(state)); },
    get notices() { return [...seen]; },
  };
})();

// Warns the desktop's owner before the hub stops their server for being idle. The single-user
// server knows when (desktop_proxy/idle_watch.py: GET <server>/hepsdesk/idle); a person's input
// on the desktop is the server's activity, so typing or clicking here keeps it running, and
// the warning goes once the hub has heard of it.
(function () {
  'use strict';
  const box = document.getElementById('idle-warning');
  if (!box) return;
  // /user/<name>/[<server>/]desktop/... -> /user/<name>/[<server>/]hepsdesk/idle
  const url = window.location.pathname.replace(/\/desktop(\/.*)?$/, '/') + 'hepsdesk/idle';
  let deadline = null;
  let warnBefore = 0;
  let skew = 0;  // this browser's clock minus the server's

  function minutes(seconds) {
    if (seconds < 90) return `${Math.max(0, Math.round(seconds))} seconds`;
    return `${Math.round(seconds / 60)} minutes`;
  }

  function draw() {
    const left = deadline === null ? Infinity : deadline + skew - Date.now() / 1000;
    if (left > warnBefore) {
      box.hidden = true;
      return;
    }
    box.textContent = left > 0
      ? `Nobody has used this server for a while: it stops in ${minutes(left)}. Type or click on the desktop to keep it.`
      : 'Nobody used this server, so it is being stopped. Your home and data are kept.';
    box.hidden = false;
  }

  async function ask() {
    try {
      const response = await fetch(url, {credentials: 'same-origin', cache: 'no-store'});
      if (!response.ok) return;
      const answer = await response.json();
      deadline = typeof answer.idle_deadline === 'number' ? answer.idle_deadline : null;
      warnBefore = answer.warn_before || 0;
      skew = Date.now() / 1000 - answer.now;
    } catch (e) {
      // the server is busy or going: keep what was known
    }
    draw();
  }

  window.hepsdeskIdle = { ask, get deadline() { return deadline; } };
  ask();
  setInterval(ask, 10000);
  setInterval(draw, 1000);
})();

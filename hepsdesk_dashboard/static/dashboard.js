// The hepsdesk dashboard: reads /hub/hepsdesk/dashboard/state every few seconds and draws it;
// stop, shelve and delete ask for confirmation first. Every value goes in as text, never HTML.
(function () {
  "use strict";
  const root = document.getElementById("hepsdesk-dashboard");
  if (!root) return;
  const stateUrl = root.dataset.stateUrl;
  const actionsUrl = root.dataset.actionsUrl;
  const xsrf = root.dataset.xsrf;
  const REFRESH_MS = 5000;
  const message = document.getElementById("dashboard-message");

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 120) return `${seconds} s`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
    return `${Math.round(seconds / 86400)} d`;
  }

  function since(iso) {
    if (!iso) return "";
    return duration(Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))) + " ago";
  }

  function show(text, ok) {
    message.textContent = text;
    message.className = `alert ${ok ? "alert-success" : "alert-danger"}`;
  }

  async function act(vm, action) {
    const who = vm.orphan ? `the orphan VM ${vm.id}` : `${vm.user}'s server${vm.server ? " " + vm.server : ""}`;
    const what = {
      stop: `Stop ${who}? Its VM is shelved or deleted as its profile says.`,
      shelve: `Stop ${who} and shelve its VM (its disk is kept, its host freed)?`,
      delete: `Delete the VM of ${who}? Everything on its disk is lost (home and data are on the storage).`,
    }[action];
    if (!window.confirm(what)) return;
    let answer;
    try {
      const response = await fetch(actionsUrl, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-XSRFToken": xsrf},
        body: JSON.stringify({action: action, vm: vm.id}),
      });
      answer = await response.json().catch(() => ({message: response.statusText}));
      show(answer.message, response.ok);
    } catch (e) {
      show(`The hub did not answer: ${e}`, false);
    }
    refresh();
  }

  function drawVms(vms) {
    const body = document.querySelector("#dashboard-vms tbody");
    body.replaceChildren();
    for (const vm of vms) {
      const row = document.createElement("tr");
      row.dataset.vm = vm.id;
      row.dataset.user = vm.user;
      if (vm.orphan) row.className = "table-warning";
      cell(row, vm.user);
      cell(row, vm.server);
      cell(row, vm.profile);
      cell(row, vm.image);
      cell(row, vm.flavor);
      cell(row, vm.gpus);
      cell(row, vm.group);
      cell(row, vm.host);
      cell(row, vm.orphan ? `${vm.state} (orphan: the reaper removes it)` :
        vm.pooled ? `${vm.state} (warm pool: waiting for a user)` :
        vm.state + (vm.task ? ` (${vm.task})` : "") + (vm.pending ? ` — ${vm.pending} pending` : ""), "vm-state");
      cell(row, duration(vm.age_s));
      cell(row, since(vm.last_activity));
      const desktop = vm.desktop && vm.desktop.connected ?
        `connected (${vm.desktop.viewers} + ${vm.desktop.guests} guest(s), ${vm.desktop.fps} fps)` : "—";
      cell(row, desktop, "vm-desktop");
      const buttons = cell(row, "");
      for (const action of vm.actions) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = `btn btn-sm ${action === "delete" ? "btn-outline-danger" : "btn-outline-secondary"} me-1`;
        button.textContent = action[0].toUpperCase() + action.slice(1);
        button.dataset.action = action;
        button.addEventListener("click", () => act(vm, action));
        buttons.appendChild(button);
      }
      body.appendChild(row);
    }
  }

  function drawGpus(gpus) {
    const body = document.querySelector("#dashboard-gpus tbody");
    body.replaceChildren();
    for (const gpu of gpus) {
      const row = document.createElement("tr");
      row.dataset.model = gpu.model;
      for (const value of [gpu.model, gpu.used, gpu.free, gpu.total]) cell(row, value);
      body.appendChild(row);
    }
  }

  function drawGroups(groups) {
    const body = document.querySelector("#dashboard-groups tbody");
    body.replaceChildren();
    const of = (used, limit) => limit === null || limit === undefined ? `${used}` : `${used} of ${limit}`;
    for (const group of groups) {
      const row = document.createElement("tr");
      row.dataset.group = group.group;
      const limits = group.limits || {gpus: {}};
      const models = new Set([...Object.keys(group.used.gpus), ...Object.keys(limits.gpus || {})]);
      const gpus = [...models].sort().map((m) => `${of(group.used.gpus[m] || 0, (limits.gpus || {})[m])} ${m}`);
      cell(row, group.group);
      cell(row, of(group.used.vms, limits.vms));
      cell(row, of(group.used.vcpus, limits.vcpus));
      cell(row, gpus.join(", "));
      body.appendChild(row);
    }
  }

  function drawPool(pool) {
    document.getElementById("dashboard-pool-section").classList.toggle("d-none", pool.length === 0);
    const body = document.querySelector("#dashboard-pool tbody");
    body.replaceChildren();
    for (const entry of pool) {
      const row = document.createElement("tr");
      row.dataset.profile = entry.profile;
      if (entry.problem) row.className = "table-danger";
      for (const value of [entry.profile, entry.ready, entry.booting, entry.target, entry.problem || "—"]) {
        cell(row, value);
      }
      body.appendChild(row);
    }
  }

  let timer = null;
  async function refresh() {
    clearTimeout(timer);
    try {
      const response = await fetch(stateUrl, {credentials: "same-origin", cache: "no-store"});
      const state = await response.json();
      if (!response.ok) throw new Error(state.message || response.statusText);
      drawVms(state.vms);
      drawGpus(state.gpus);
      drawGroups(state.groups);
      drawPool(state.pool);
      document.getElementById("dashboard-summary").textContent =
        `${state.vms.length} VM(s), ${state.desktops_connected} desktop(s) connected, ` +
        `${state.orphans} orphan(s); the cloud was listed ${state.listed_ago_s ?? "?"} s ago.`;
      root.dataset.generatedAt = state.generated_at;
    } catch (e) {
      document.getElementById("dashboard-summary").textContent = `Cannot read the hub's state: ${e.message}`;
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }
  refresh();
})();

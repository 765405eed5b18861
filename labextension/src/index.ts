/**
 * The JupyterLab side of the hepsdesk desktop.
 *
 * The "Desktop" launcher tile comes from jupyter-server-proxy (desktop_proxy.setup_desktop);
 * this extension adds an "Open Desktop" command to the command palette and a launcher tile
 * per GUI application of the VM's image (SasView, Dioptas, PyMca, ...; listed by the server
 * extension desktop_proxy.lab_api), but only when the server really has the desktop, so a Lab
 * without it stays as it was. A tile starts its application on the desktop (which starts
 * the desktop too) and opens the desktop in a new tab; if the application cannot start, the
 * launcher says why. "Desktop (in JupyterLab)" shows the live desktop as a JupyterLab tab
 * beside the notebooks, with the keyboard going to it while it is the active tab.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, IFrame, Notification, showErrorMessage } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { ILauncher } from '@jupyterlab/launcher';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';

export const OPEN_DESKTOP = 'hepsdesk:open-desktop';
export const OPEN_APP = 'hepsdesk:open-app';
export const DESKTOP_PANEL = 'hepsdesk:desktop-panel';
const PANEL_ID = 'hepsdesk-desktop-panel';
// desktop_proxy/static/desktop-icon.svg, the "Desktop" tile's icon
const desktopIcon = new LabIcon({
  name: 'hepsdesk:desktop',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">' +
    '<rect x="6" y="10" width="52" height="34" rx="3" fill="#2b4257"/>' +
    '<rect x="10" y="14" width="44" height="26" rx="1" fill="#5da0d8"/>' +
    '<rect x="14" y="18" width="18" height="11" fill="#ffffff" opacity="0.85"/>' +
    '<rect x="26" y="24" width="22" height="12" fill="#1e1e1e" opacity="0.85"/>' +
    '<path d="M24 44h16l3 8H21z" fill="#2b4257"/>' +
    '<rect x="16" y="52" width="32" height="3" rx="1.5" fill="#2b4257"/></svg>'
});
const APP_CATEGORY = 'Desktop applications';
// The desktop takes only JSON POSTs (another site's form cannot send one).
const JSON_HEADERS = { 'Content-Type': 'application/json' };

interface IDesktopApp {
  name: string;
  title: string;
  version: string;
  opens: string[];
  icon_url: string | null;
}

/** Whether jupyter-server-proxy serves the desktop on this server. */
async function serverHasDesktop(): Promise<boolean> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'server-proxy', 'servers-info');
  try {
    const response = await ServerConnection.makeRequest(url, {}, settings);
    if (!response.ok) {
      return false;
    }
    const info = await response.json();
    return (info.server_processes || []).some(
      (server: { name: string }) => server.name === 'desktop'
    );
  } catch (reason) {
    console.warn('hepsdesk: cannot ask jupyter-server-proxy for its servers', reason);
    return false;
  }
}

/** The GUI applications of this server's image (none if the server does not say). */
async function desktopApps(): Promise<IDesktopApp[]> {
  const settings = ServerConnection.makeSettings();
  try {
    const response = await ServerConnection.makeRequest(
      URLExt.join(settings.baseUrl, 'hepsdesk', 'apps'),
      {},
      settings
    );
    if (!response.ok) {
      return [];
    }
    return (await response.json()).applications || [];
  } catch (reason) {
    console.warn('hepsdesk: cannot read the image applications', reason);
    return [];
  }
}

/** The application's icon for its tile (undefined: the launcher's default). */
async function appIcon(app: IDesktopApp): Promise<LabIcon | undefined> {
  if (!app.icon_url) {
    return undefined;
  }
  const settings = ServerConnection.makeSettings();
  try {
    const response = await ServerConnection.makeRequest(
      URLExt.join(settings.baseUrl, 'hepsdesk', 'apps', app.name, 'icon'),
      {},
      settings
    );
    const type = response.headers.get('Content-Type') || '';
    if (!response.ok || !type.startsWith('image/svg')) {
      return undefined;
    }
    return new LabIcon({
      name: `hepsdesk:app-${app.name}`,
      svgstr: await response.text()
    });
  } catch (reason) {
    return undefined;
  }
}

/** The message of the desktop API's JSON error answer, or a description of the answer. */
async function errorMessage(response: Response): Promise<string> {
  try {
    const body = await response.json();
    if (body && typeof body.message === 'string') {
      return body.message;
    }
  } catch {
    // not JSON: e.g. the proxy's own error page
  }
  return `the desktop answered ${response.status} ${response.statusText}`;
}

/**
 * Start ``app`` on the desktop and show the desktop in ``tab`` (opened by the click, so no
 * pop-up blocker stands in the way); then wait for the application's window, so that an
 * application that cannot start (it exits first) is reported here, in JupyterLab, with the
 * end of its output. A refused start closes the tab.
 */
async function openApp(app: IDesktopApp, tab: Window | null, desktopUrl: string): Promise<void> {
  const settings = ServerConnection.makeSettings();
  const api = URLExt.join(settings.baseUrl, 'desktop', 'api');
  let launch: { id: string };
  try {
    const response = await ServerConnection.makeRequest(
      URLExt.join(api, 'apps', app.name, 'open'),
      { method: 'POST', body: JSON.stringify({ files: [] }), headers: JSON_HEADERS },
      settings
    );
    if (!response.ok) {
      tab?.close();
      await showErrorMessage(`Cannot start ${app.title}`, await errorMessage(response));
      return;
    }
    launch = await response.json();
  } catch (reason) {
    tab?.close();
    await showErrorMessage(`Cannot start ${app.title}`, `the desktop cannot be reached: ${reason}`);
    return;
  }
  if (tab) {
    tab.location.href = desktopUrl;
  } else {
    window.open(desktopUrl, '_blank');
  }
  try {
    const response = await ServerConnection.makeRequest(
      URLExt.join(api, 'launches', launch.id, 'wait-window'),
      { method: 'POST', body: JSON.stringify({ timeout: 180 }), headers: JSON_HEADERS },
      settings
    );
    if (response.status === 409) {
      await showErrorMessage(`${app.title} stopped`, await errorMessage(response));
    }
  } catch (reason) {
    console.warn(`hepsdesk: cannot follow the start of ${app.title}`, reason);
  }
}

/**
 * The desktop page in a JupyterLab tab: the same desktop (a viewer of its own), with the
 * clipboard, sound, fullscreen and pointer lock allowed to the frame, and the keyboard given
 * to it whenever the tab becomes active.
 */
class DesktopPanel extends IFrame {
  constructor(url: string) {
    super({
      sandbox: [
        'allow-scripts',
        'allow-same-origin',
        'allow-downloads',
        'allow-forms',
        'allow-modals',
        'allow-pointer-lock',
        'allow-popups'
      ],
      referrerPolicy: 'same-origin'
    });
    this.id = PANEL_ID;
    this.title.label = 'Desktop';
    this.title.caption = 'The graphical desktop of this server';
    this.title.closable = true;
    this.title.icon = desktopIcon;
    this.addClass('hepsdesk-DesktopPanel');
    this.frame?.setAttribute(
      'allow',
      'clipboard-read; clipboard-write; autoplay; fullscreen; keyboard-map; pointer-lock'
    );
    this.url = url;
  }

  get frame(): HTMLIFrameElement | null {
    return this.node.querySelector('iframe');
  }

  protected onActivateRequest(msg: Message): void {
    super.onActivateRequest(msg);
    this.frame?.focus();
    this.frame?.contentWindow?.focus();
  }
}

/**
 * Warns before the hub stops this server for being idle: the single-user server knows when
 * (desktop_proxy/idle_watch.py, GET <base>hepsdesk/idle); running or saving something is use.
 */
function warnBeforeIdleStop(): void {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'hepsdesk', 'idle');
  let deadline: number | null = null;
  let warnBefore = 0;
  let skew = 0; // this browser's clock minus the server's
  let shown: string | null = null;
  const draw = () => {
    const left = deadline === null ? Infinity : deadline + skew - Date.now() / 1000;
    if (left > warnBefore) {
      if (shown) {
        Notification.dismiss(shown);
        shown = null;
      }
      return;
    }
    const when = left < 90 ? `${Math.max(0, Math.round(left))} seconds` : `${Math.round(left / 60)} minutes`;
    const message =
      left > 0
        ? `Nobody has used this server for a while: it stops in ${when}. Run a cell or save a file to keep it.`
        : 'Nobody used this server, so it is being stopped. Your home and data are kept.';
    if (shown) {
      Notification.update({ id: shown, message, type: 'warning', autoClose: false });
    } else {
      shown = Notification.warning(message, { autoClose: false });
    }
  };
  const ask = async () => {
    try {
      const response = await ServerConnection.makeRequest(url, {}, settings);
      if (response.ok) {
        const answer = await response.json();
        deadline = typeof answer.idle_deadline === 'number' ? answer.idle_deadline : null;
        warnBefore = answer.warn_before || 0;
        skew = Date.now() / 1000 - answer.now;
      }
    } catch (e) {
      // the server is busy or going: keep what was known
    }
    draw();
  };
  void ask();
  window.setInterval(() => void ask(), 10000);
  window.setInterval(draw, 5000);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@hepsdesk/labextension:plugin',
  description: 'Opens the WebRTC desktop of this server, and its applications.',
  autoStart: true,
  optional: [ICommandPalette, ILauncher],
  activate: async (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    launcher: ILauncher | null
  ) => {
    warnBeforeIdleStop();
    if (!(await serverHasDesktop())) {
      console.info('hepsdesk: this server has no desktop; the Open Desktop command is not added');
      return;
    }
    const desktopUrl = URLExt.join(PageConfig.getBaseUrl(), 'desktop/');
    app.commands.addCommand(OPEN_DESKTOP, {
      label: 'Open Desktop',
      caption: 'Open the graphical desktop of this server in a new browser tab',
      execute: () => {
        window.open(desktopUrl, '_blank');
      }
    });
    palette?.addItem({ command: OPEN_DESKTOP, category: 'Desktop' });
    app.commands.addCommand(DESKTOP_PANEL, {
      label: 'Desktop (in JupyterLab)',
      caption: 'Show the graphical desktop of this server as a tab beside the notebooks',
      icon: desktopIcon,
      execute: () => {
        let panel = Array.from(app.shell.widgets('main')).find(w => w.id === PANEL_ID);
        if (!panel) {
          panel = new DesktopPanel(desktopUrl);
          app.shell.add(panel, 'main');
        }
        app.shell.activateById(PANEL_ID);
      }
    });
    palette?.addItem({ command: DESKTOP_PANEL, category: 'Desktop' });
    // Beside jupyter-server-proxy's "Desktop" tile (which opens a browser tab).
    launcher?.add({ command: DESKTOP_PANEL, category: 'Notebook', rank: 100 });

    const apps = await desktopApps();
    const byName = new Map(apps.map(a => [a.name, a]));
    const icons = new Map<string, LabIcon | undefined>();
    await Promise.all(apps.map(async a => icons.set(a.name, await appIcon(a))));
    app.commands.addCommand(OPEN_APP, {
      label: args => (byName.get(args.name as string)?.title ?? 'Desktop application'),
      caption: args => {
        const a = byName.get(args.name as string);
        return a ? `Start ${a.title} ${a.version} on the desktop (opens in a new tab)` : '';
      },
      icon: args => icons.get(args.name as string),
      execute: async args => {
        const a = byName.get(args.name as string);
        if (!a) {
          await showErrorMessage('Unknown application', `This image has no application ${args.name}.`);
          return;
        }
        await openApp(a, window.open('about:blank', '_blank'), desktopUrl);
      }
    });
    apps.forEach((a, rank) => {
      launcher?.add({ command: OPEN_APP, args: { name: a.name }, category: APP_CATEGORY, rank });
      palette?.addItem({ command: OPEN_APP, args: { name: a.name }, category: 'Desktop' });
    });
  }
};

export default plugin;

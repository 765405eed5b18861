/**
 * The JupyterLab side of the hepsdesk desktop.
 *
 * The "Desktop" launcher tile comes from jupyter-server-proxy (desktop_proxy.setup_desktop);
 * this extension adds an "Open Desktop" command to the command palette and a launcher tile
 * per GUI application of the VM's image (SasView, Dioptas, PyMca, ...; listed by the server
 * extension desktop_proxy.lab_api), but only when the server really has the desktop, so a Lab
 * without it stays as it was. A tile starts its application on the desktop (which starts
 * the desktop too) and opens the desktop in a new tab; if the application cannot start, the
 * launcher says why.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { ILauncher } from '@jupyterlab/launcher';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';

export const OPEN_DESKTOP = 'hepsdesk:open-desktop';
export const OPEN_APP = 'hepsdesk:open-app';
const APP_CATEGORY = 'Desktop applications';

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
      { method: 'POST', body: JSON.stringify({ files: [] }) },
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
      { method: 'POST', body: JSON.stringify({ timeout: 180 }) },
      settings
    );
    if (response.status === 409) {
      await showErrorMessage(`${app.title} stopped`, await errorMessage(response));
    }
  } catch (reason) {
    console.warn(`hepsdesk: cannot follow the start of ${app.title}`, reason);
  }
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

/**
 * The JupyterLab side of the hepsdesk desktop.
 *
 * The "Desktop" launcher tile comes from jupyter-server-proxy (desktop_proxy.setup_desktop);
 * this extension adds an "Open Desktop" command to the command palette, but only when the
 * server really has the desktop, so a Lab without it stays as it was.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export const OPEN_DESKTOP = 'hepsdesk:open-desktop';

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

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@hepsdesk/labextension:plugin',
  description: 'Opens the WebRTC desktop of this server.',
  autoStart: true,
  optional: [ICommandPalette],
  activate: async (app: JupyterFrontEnd, palette: ICommandPalette | null) => {
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
  }
};

export default plugin;

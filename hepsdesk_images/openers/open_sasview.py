"""Start SasView's GUI with data files loaded: ``python open_sasview.py [FILE...]``.

SasView's own command line takes a file as a Python script to run, not as data to open, so
the desktop starts it through this: SasView as its ``sasview`` command does, then the files
loaded into its Data Explorer once the main window exists, as File > Load Data would. Two
start-up steps that do not fit a facility VM are left out: the check for a newer release on
www.sasview.org (VMs need not reach the internet: it waits for the lookup to fail) and, when
files are given, the "What's New" panel in front of them.
"""

import os
import sys


def main() -> int:
    files = [os.path.abspath(f) for f in sys.argv[1:]]
    from PySide6.QtCore import QTimer
    from sas.qtgui.MainWindow import MainWindow
    from sas.qtgui.Utilities.NewVersion import NewVersionAvailable
    from sas.system import config
    from sas.system.version import __version__

    NewVersionAvailable.get_current_release_version = lambda: None
    if files:
        config.LAST_WHATS_NEW_HIDDEN_VERSION = __version__

    window_class = MainWindow.MainSasViewWindow
    original_init = window_class.__init__

    def init_then_load(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if files:
            QTimer.singleShot(500, lambda: self.guiManager.filesWidget.loadFromURL(files))

    window_class.__init__ = init_then_load
    sys.argv = [sys.argv[0]]
    from sas.cli import main as sasview_main

    return sasview_main()


if __name__ == "__main__":
    sys.exit(main())

"""Start Dioptas with files loaded: ``python open_dioptas.py [IMAGE...] [GEOMETRY.poni]``.

Dioptas's own command line opens nothing but a saved project (``.json``), so the desktop
starts it through this: Dioptas as its ``dioptas`` command does, then each file loaded once
the main window is shown, as File > Load Image and the calibration's Load would (a ``.poni``
file is a calibration, anything else an image; the last image stays on screen).
"""

import os
import sys


def main() -> int:
    files = [os.path.abspath(f) for f in sys.argv[1:]]
    import dioptas
    from dioptas.controller.MainController import MainController

    original_show = MainController.show_window

    def show_then_load(self):
        original_show(self)
        for path in files:
            if path.lower().endswith(".poni"):
                self.model.calibration_model.load(path)
            else:
                self.model.img_model.load(path)

    MainController.show_window = show_then_load
    sys.argv = [sys.argv[0]]
    return dioptas.main() or 0


if __name__ == "__main__":
    sys.exit(main())

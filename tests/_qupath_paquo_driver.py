"""The QuPath driver plus one operation: open a project image the way QuPath's GUI does.

``open_image``: ``ProjectIO.loadProject``, then ``entry.readImageData()`` (which builds the image
server, so the image itself must open) and what QuPath says about the image and every object.
"""

from __future__ import annotations

from typing import Any

from _qupath_driver import OPS, J, describe, main  # this script's folder comes first on sys.path


def op_open_image(job: dict[str, Any]) -> Any:
    bi = J("java.awt.image.BufferedImage")
    project = J("qupath.lib.projects.ProjectIO").loadProject(J("java.io.File")(job["path"]), bi)
    entry = next(e for e in project.getImageList() if str(e.getID()) == str(job["entry"]))
    data = entry.readImageData()
    server = data.getServer()
    cal = server.getPixelCalibration()
    return {
        "image_type": str(data.getImageType().name()),
        "server": [int(server.getWidth()), int(server.getHeight())],
        "server_class": str(server.getClass().getSimpleName()),
        "pixel_um": [float(cal.getPixelWidthMicrons()), float(cal.getPixelHeightMicrons())],
        "classes": [str(c.toString()) for c in project.getPathClasses()],
        "objects": [describe(p) for p in data.getHierarchy().getObjects(None, None)],
    }


OPS["open_image"] = op_open_image

if __name__ == "__main__":
    main()

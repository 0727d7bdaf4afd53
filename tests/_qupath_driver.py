"""Runs QuPath's own classes (through JPype) for the QuPath-checked test tier; one JVM per process.

Usage: ``python tests/_qupath_driver.py <qupath install>`` with a JSON list of jobs on stdin; prints
one JSON list of results on stdout. A JVM cannot be restarted in a process, so the tier starts one
of these per QuPath version. Each job is ``{"op": ..., ...}``; see ``OPS`` below.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

GROOVY_JARS = [str(p) for p in (Path("/usr/share/java/groovy-all.jar"),) if p.is_file()]  # Debian: groovy


def start_jvm(install: Path) -> None:
    import jpype

    runtime = install / "lib" / "runtime"
    jvm = next(iter(sorted(runtime.glob("lib/server/libjvm.*"))), None)
    jpype.startJVM(
        str(jvm) if jvm else jpype.getDefaultJVMPath(),
        "-Djava.awt.headless=true",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=error",
        classpath=[str(install / "lib" / "app" / "*"), *GROOVY_JARS],
        convertStrings=True,
    )
    J("qupath.lib.images.servers.ImageServers").getServerBuilderFactory()  # or Gson cannot build servers


def J(name: str) -> Any:
    import jpype

    return jpype.JClass(name)


def _float(v: Any) -> float | None:
    f = float(v)
    return None if f != f else f  # NaN to null (JSON)


def describe(p: Any, wkt: bool = False) -> dict[str, Any]:
    """What QuPath itself says about one object."""
    roi = p.getROI()
    pc = p.getPathClass()
    ml = p.getMeasurementList()
    names = [str(n) for n in (ml.getNames() if hasattr(ml, "getNames") else ml.getMeasurementNames())]
    out: dict[str, Any] = {
        "id": str(p.getID()),
        "type": str(p.getClass().getSimpleName()),
        "class": None if pc is None else str(pc.toString()),
        "class_color": None if pc is None or pc.getColor() is None else int(pc.getColor()),
        "color": None if p.getColor() is None else int(p.getColor()),
        "name": None if p.getName() is None else str(p.getName()),
        "locked": bool(p.isLocked()),
        "measurement_names": names,
        "measurements": {
            n: _float(ml.get(n) if hasattr(ml, "get") else ml.getMeasurementValue(n)) for n in names
        },
        "parent": None if p.getParent() is None else str(p.getParent().getID()),
        "n_children": int(p.nChildObjects()),
    }
    if roi is not None:
        geom = roi.getGeometry()
        out.update(
            roi=str(roi.getRoiName()),
            area=float(geom.getArea()),
            roi_area=float(roi.getArea()),
            bounds=[
                float(roi.getBoundsX()),
                float(roi.getBoundsY()),
                float(roi.getBoundsX() + roi.getBoundsWidth()),
                float(roi.getBoundsY() + roi.getBoundsHeight()),
            ],
            plane=[int(roi.getC()), int(roi.getZ()), int(roi.getT())],
        )
        if wkt:
            out["wkt"] = str(geom.toText())
    if str(p.getClass().getSimpleName()) == "PathCellObject" and p.getNucleusROI() is not None:
        out["nucleus_area"] = float(p.getNucleusROI().getGeometry().getArea())
    if str(p.getClass().getSimpleName()) == "TMACoreObject":
        out["missing"] = bool(p.isMissing())
    return out


def op_read_geojson(job: dict[str, Any]) -> Any:
    objs = J("qupath.lib.io.PathIO").readObjects(J("java.nio.file.Paths").get(job["path"]))
    return [describe(p) for p in objs]


def _image_data(path: str) -> Any:
    bi = J("java.awt.image.BufferedImage")
    return J("qupath.lib.io.PathIO").readImageData(J("java.nio.file.Paths").get(path), None, None, bi)


def op_read_qpdata(job: dict[str, Any]) -> Any:
    data = _image_data(job["path"])
    h = data.getHierarchy()
    objs = [describe(p, job.get("wkt", False)) for p in h.getObjects(None, None)]
    grid = h.getTMAGrid()
    out = {
        "objects": objs,
        "image_type": str(data.getImageType().name()),
        "tma": None if grid is None else [int(grid.getGridWidth()), int(grid.getGridHeight())],
        "properties": {str(k): str(v) for k, v in dict(data.getProperties()).items()},
    }
    if job.get("reresolve"):
        out["reresolved"] = _reresolve(h)
    return out


def _reresolve(h: Any) -> dict[str, str]:
    """Where QuPath itself puts the tiles: take them out, add them again, resolveHierarchy()."""
    tiles = J("java.util.ArrayList")(h.getTileObjects())
    h.removeObjects(tiles, False)
    h.addObjects(tiles)  # under the root, then placed by QuPath's rule as the import script does
    h.resolveHierarchy()
    return {str(t.getID()): str(t.getParent().getID()) for t in tiles}


def op_groovy(job: dict[str, Any]) -> Any:
    """Run histobridge's Groovy scripts on one project image (QP calls: tests/groovy/qp_standin.groovy).

    ``scripts`` run in order on one ImageData (as "Run for project" does for an image); with
    ``save`` the image is saved through the project (DefaultProject, as QuPath does afterwards).
    """
    for path in job.get("delete_first", []):  # e.g. swap a predictions file between runs
        Path(path).unlink()
    for path, text in job.get("write_first", {}).items():
        Path(path).write_text(text, encoding="utf-8")
    file = J("java.io.File")
    project = J("qupath.lib.projects.ProjectIO").loadProject(
        file(job["project"]), J("java.awt.image.BufferedImage")
    )
    entry = next(e for e in project.getImageList() if str(e.getID()) == str(job["entry"]))
    data = entry.readImageData()
    binding = J("groovy.lang.Binding")()
    printed = J("java.io.StringWriter")()
    for k, v in (
        ("imageData", data),
        ("entry", entry),
        ("projectBase", str(Path(job["project"]).parent)),
        ("out", J("java.io.PrintWriter")(printed, True)),
    ):
        binding.setVariable(k, v)
    shell = J("groovy.lang.GroovyShell")(binding)
    shell.evaluate(file(str(Path(__file__).with_name("groovy") / "qp_standin.groovy")))
    for script in job["scripts"]:
        shell.evaluate(file(script))
    if job.get("save"):
        entry.saveImageData(data)
    objs = [describe(p) for p in data.getHierarchy().getObjects(None, None)]
    return {"printed": str(printed.toString()), "objects": objs}


def _plane(c: int = -1, z: int = 0, t: int = 0) -> Any:
    plane = J("qupath.lib.regions.ImagePlane")
    return plane.getPlaneWithChannel(c, z, t) if c >= 0 else plane.getPlane(z, t)


def _ml(values: dict[str, float]) -> Any:
    factory = J("qupath.lib.measurements.MeasurementListFactory")
    kind = J("qupath.lib.measurements.MeasurementList$MeasurementListType")
    ml = factory.createMeasurementList(len(values), kind.FLOAT)
    for k, v in values.items():
        ml.put(k, float(v))
    ml.close()
    return ml


def op_write_variety(job: dict[str, Any]) -> Any:
    """Every object type, ROI type and field QuPath can store, written with PathIO.writeImageData."""
    import jpype

    rois, objs, pc = (
        J("qupath.lib.roi.ROIs"),
        J("qupath.lib.objects.PathObjects"),
        J("qupath.lib.objects.classes.PathClass"),
    )
    gt, wkt = J("qupath.lib.roi.GeometryTools"), J("org.locationtech.jts.io.WKTReader")()
    darr = jpype.JArray(jpype.JDouble)
    p0 = _plane()
    tumor, positive = pc.fromString("Tumor", J("java.lang.Integer")(-65536)), pc.fromString("Tumor: Positive")
    made: list[Any] = []

    def add(o: Any, name: str | None = None, color: int | None = None, locked: bool = False) -> Any:
        if name is not None:
            o.setName(name)
        if color is not None:
            o.setColor(J("java.lang.Integer")(color))
        o.setLocked(locked)
        made.append(o)
        return o

    big = add(
        objs.createAnnotationObject(
            rois.createRectangleROI(0.0, 0.0, 1200.0, 900.0, p0), pc.fromString("Stroma")
        ),
        "big",
        locked=True,
    )
    big.getMeasurementList().put("annotation value", 2.5)
    add(objs.createAnnotationObject(rois.createEllipseROI(1300.0, 50.0, 300.0, 180.0, p0), tumor), "ellipse")
    poly = gt.geometryToROI(
        wkt.read(
            "POLYGON ((1300 400, 1700 400, 1700 800, 1300 800, 1300 400), "
            "(1400 500, 1500 500, 1500 600, 1400 600, 1400 500))"
        ),
        p0,
    )
    add(objs.createAnnotationObject(poly, positive), "polygon with hole")
    multi = gt.geometryToROI(
        wkt.read(
            "MULTIPOLYGON (((1750 0, 1950 0, 1950 200, 1750 200, 1750 0)), "
            "((1750 300, 1950 300, 1950 500, 1750 500, 1750 300), "
            "(1800 350, 1850 350, 1850 400, 1800 400, 1800 350)))"
        ),
        p0,
    )
    add(
        objs.createAnnotationObject(multi, pc.fromString("Tumor: Positive: 2+")),
        "multipolygon",
        color=-16711936,
    )
    add(
        objs.createAnnotationObject(
            rois.createPolygonROI(darr([100.0, 300.0, 200.0]), darr([1000.0, 1000.0, 1200.0]), p0)
        ),
        "triangle",
        color=-16776961,
    )
    add(
        objs.createAnnotationObject(
            rois.createPolylineROI(darr([10.0, 50.0, 90.0]), darr([1300.0, 1350.0, 1300.0]), p0),
            pc.fromString("Other"),
        ),
        "polyline",
    )
    add(objs.createAnnotationObject(rois.createLineROI(500.0, 1000.0, 700.0, 1100.0, p0)), "line")
    add(
        objs.createAnnotationObject(
            rois.createPointsROI(darr([800.0, 820.0, 840.0]), darr([1000.0, 1010.0, 1020.0]), p0),
            pc.fromString("Immune cells"),
        ),
        "points",
    )
    add(
        objs.createAnnotationObject(
            rois.createRectangleROI(100.0, 100.0, 80.0, 70.0, _plane(-1, 2, 1)), tumor
        ),
        "z2 t1",
    )
    add(
        objs.createAnnotationObject(rois.createRectangleROI(1000.0, 1000.0, 30.0, 15.0, _plane(1, 0, 0))),
        "channel 1",
    )
    for i in range(3):
        x = 50.0 + 60 * i
        add(
            objs.createDetectionObject(
                rois.createRectangleROI(x, 50.0, 40.0, 40.0, p0),
                tumor,
                _ml({"Detection probability": 0.1 * (i + 1), "big": 123456789.0}),
            )
        )
    for i in range(4):
        x = 400.0 + 64 * i
        add(
            objs.createTileObject(
                rois.createRectangleROI(x, 300.0, 64.0, 64.0, p0),
                tumor if i % 2 else pc.fromString("Stroma"),
                _ml({"model: Tumor probability": i / 4 + 0.001, "model: Stroma probability": 0.999 - i / 4}),
            ),
            "model" if i == 3 else None,
        )
    for i in range(3):
        x = 600.0 + 50 * i
        cell = rois.createPolygonROI(darr([x, x + 40, x + 40, x]), darr([600.0, 600.0, 640.0, 640.0]), p0)
        nuc = rois.createEllipseROI(x + 10, 610.0, 20.0, 20.0, p0)
        add(
            objs.createCellObject(
                cell,
                nuc,
                [None, pc.fromString("Tumor: Negative"), positive][i],
                _ml({"Nucleus: Area": 100.17 - i, "Cell: Area": 1600.0}),
            )
        )
    h = J("qupath.lib.objects.hierarchy.PathObjectHierarchy")()
    cores = J("java.util.ArrayList")()
    for i in range(4):
        cores.add(
            objs.createTMACoreObject(2000.0 + 300 * (i % 2), 100.0 + 300 * (i // 2), 250.0, 250.0, i == 3)
        )
    h.setTMAGrid(J("qupath.lib.objects.hierarchy.DefaultTMAGrid").create(cores, 2))
    h.addObjects(J("java.util.ArrayList")(made))
    h.resolveHierarchy()
    server = J("qupath.lib.images.servers.ImageServerProvider").buildServer(
        job["image"], J("java.awt.image.BufferedImage")
    )
    itype = J("qupath.lib.images.ImageData$ImageType")
    data = J("qupath.lib.images.ImageData")(server, h, itype.BRIGHTFIELD_H_E)
    data.setProperty("PROJECT_ENTRY_ID", "test::1")
    J("qupath.lib.io.PathIO").writeImageData(J("java.io.File")(job["path"]), data)
    return [describe(p, True) for p in h.getObjects(None, None)]


def op_load_project(job: dict[str, Any]) -> Any:
    """Open a project with QuPath's ProjectIO; per image its name and the objects of its data file."""
    bi = J("java.awt.image.BufferedImage")
    project = J("qupath.lib.projects.ProjectIO").loadProject(J("java.io.File")(job["path"]), bi)
    images = []
    for entry in project.getImageList():
        data = entry.readHierarchy() if entry.hasImageData() else None
        wkt = job.get("wkt", False)
        objs = [] if data is None else [describe(p, wkt) for p in data.getObjects(None, None)]
        name, has = str(entry.getImageName()), bool(entry.hasImageData())
        images.append({"name": name, "has_data": has, "objects": objs})
    classes = [str(c.toString()) for c in project.getPathClasses()]
    return {"images": images, "classes": classes}


def op_resave_qpdata(job: dict[str, Any]) -> Any:
    """Open a data file on an image QuPath can read (``image``) and save it as QuPath saves images."""
    bi = J("java.awt.image.BufferedImage")
    server = J("qupath.lib.images.servers.ImageServerProvider").buildServer(job["image"], bi)
    path = J("java.nio.file.Paths").get(job["path"])
    data = J("qupath.lib.io.PathIO").readImageData(path, None, server, bi)
    J("qupath.lib.io.PathIO").writeImageData(J("java.io.File")(job["out"]), data)
    return int(data.getHierarchy().nObjects())


OPS = {
    "load_project": op_load_project,
    "read_geojson": op_read_geojson,
    "read_qpdata": op_read_qpdata,
    "resave_qpdata": op_resave_qpdata,
    "write_variety": op_write_variety,
    "groovy": op_groovy,
}


def main() -> None:
    install = Path(sys.argv[1])
    jobs = json.load(sys.stdin)
    start_jvm(install)
    version = str(J("qupath.lib.common.GeneralTools").getVersion())
    results: list[Any] = []
    for job in jobs:
        try:
            results.append({"ok": True, "value": OPS[job["op"]](job)})
        except Exception as err:  # reported per job, so one failure does not hide the others
            results.append({"ok": False, "error": f"{type(err).__name__}: {err}"})
    json.dump({"version": version, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()

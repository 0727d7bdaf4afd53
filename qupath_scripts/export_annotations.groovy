/*
 * histobridge: export annotations for training and tiling
 * ========================================================
 *
 * Writes the annotations of the current image as a GeoJSON FeatureCollection to
 *
 *     <project>/histobridge/annotations/<entryID>.geojson
 *
 * which is where `histobridge` looks for them (`histobridge project info <project>` shows what it
 * found). Works with QuPath 0.4, 0.5, 0.6 and 0.7.
 *
 * How to run it
 *   - In QuPath: open the project, Automate > Script editor, File > Open... this file, then
 *     Run > Run for project, select the images and Run. One file per image is written.
 *   - Headless:  QuPath script -p /path/to/project.qpproj export_annotations.groovy
 *
 * Notes
 *   - Only annotation objects are exported (not detections, cells or tiles).
 *   - Coordinates are full-resolution pixels, origin top left, exactly as QuPath stores them.
 *   - An image without annotations gets an empty FeatureCollection, so histobridge can tell
 *     "exported, nothing drawn" from "not exported yet".
 *   - Earlier exports are replaced. The file is written to a temporary name first and then moved
 *     into place, so an interrupted run never leaves half a file.
 *   - The script changes nothing in the project itself.
 */

import java.nio.file.Files
import java.nio.file.Paths
import java.nio.file.StandardCopyOption

def entry = getProjectEntry()
if (entry == null) {
    println 'histobridge export: no project entry (open the image from a project, or use Run for project)'
    return
}

def outDir = buildFilePath(PROJECT_BASE_DIR, 'histobridge', 'annotations')
mkdirs(outDir)
def target = buildFilePath(outDir, entry.getID() + '.geojson')
def partial = target + '.part'

def annotations = getAnnotationObjects()
if (annotations.isEmpty()) {
    new File(partial).setText('{"type": "FeatureCollection", "features": []}\n', 'UTF-8')
} else {
    // FEATURE_COLLECTION: one FeatureCollection even for a single object (a bare Feature or a bare
    // array otherwise). The '.part' name has no .gz/.zip suffix, so the output is plain JSON.
    exportObjectsToGeoJson(annotations, partial, 'FEATURE_COLLECTION')
}
Files.move(Paths.get(partial), Paths.get(target),
        StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE)

println "histobridge export: ${annotations.size()} annotation(s) of '${entry.getImageName()}' -> ${target}"

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
 *   - Earlier exports are replaced. A non-empty export about to be replaced by an empty one is
 *     first kept as <entryID>.geojson.backup. The file is written to a temporary name first and
 *     then moved into place, so an interrupted run never leaves half a file.
 *   - The script changes nothing in the project itself.
 */

import com.google.gson.JsonParser

import java.nio.file.Files
import java.nio.file.Paths
import java.nio.file.StandardCopyOption

/** True when a GeoJSON file holds at least one feature (an unreadable file counts as holding some). */
boolean hasFeatures(File file) {
    try {
        def json = JsonParser.parseString(file.getText('UTF-8'))
        if (json.isJsonArray())
            return json.getAsJsonArray().size() > 0
        def features = json.getAsJsonObject().get('features')
        return features == null || !features.isJsonArray() || features.getAsJsonArray().size() > 0
    } catch (Exception ignored) {
        return true
    }
}

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
    // An earlier export that held annotations is kept as <id>.geojson.backup before it is replaced
    // by an empty one (annotations deleted, or the wrong image data open, must not lose work).
    def previous = new File(target)
    if (previous.isFile() && hasFeatures(previous))
        Files.copy(previous.toPath(), Paths.get(target + '.backup'), StandardCopyOption.REPLACE_EXISTING)
    new File(partial).setText('{"type": "FeatureCollection", "features": []}\n', 'UTF-8')
} else {
    // FEATURE_COLLECTION: one FeatureCollection even for a single object (a bare Feature or a bare
    // array otherwise). The '.part' name has no .gz/.zip suffix, so the output is plain JSON.
    exportObjectsToGeoJson(annotations, partial, 'FEATURE_COLLECTION')
}
Files.move(Paths.get(partial), Paths.get(target),
        StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE)

println "histobridge export: ${annotations.size()} annotation(s) of '${entry.getImageName()}' -> ${target}"

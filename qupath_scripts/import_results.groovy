/**
 * Import histobridge classifier results into the open image (or every image with Run > Run for project).
 *
 * Reads <project>/histobridge/predictions/<entryID>.geojson.gz (written by `histobridge heatmap`),
 * removes the tiles of earlier runs of the same model first (so running it again replaces rather than
 * duplicates), adds the new tiles and nests them under their annotations.
 *
 * Earlier tiles are recognised by their name (histobridge names every tile after the model's measurement
 * prefix) or by measurement names starting with "<prefix>: ". Other detections are left alone.
 *
 * Then: Measure > Show measurement maps, and pick "<model>: <class> probability".
 *
 * Works with QuPath 0.4 to 0.7: it only uses GsonTools, getMeasurements() (a Map since 0.4),
 * addObjects/removeObjects and resolveHierarchy, none of which were removed in 0.6.
 */

import com.google.gson.JsonElement
import qupath.lib.io.GsonTools
import qupath.lib.objects.PathObject

import java.util.zip.GZIPInputStream

def entry = getProjectEntry()
if (entry == null) {
    println 'histobridge: open an image from a QuPath project first (results are stored per project entry)'
    return
}
def id = entry.getID()
def folder = buildFilePath(PROJECT_BASE_DIR, 'histobridge', 'predictions')
def file = [id + '.geojson.gz', id + '.geojson'].collect { new File(folder, it) }.find { it.isFile() }
if (file == null) {
    println "histobridge: no results for '${entry.getImageName()}' (looked for ${folder}/${id}.geojson.gz)"
    return
}

// Parse with QuPath's own GeoJSON adapters (handles .gz, which not every QuPath version's importer does).
def gson = GsonTools.getInstance()
def input = new FileInputStream(file)
if (file.getName().endsWith('.gz'))
    input = new GZIPInputStream(input)
def root = input.withReader('UTF-8') { reader -> gson.fromJson(reader, JsonElement) }
def features = root.isJsonArray() ? root.getAsJsonArray() : root.getAsJsonObject().getAsJsonArray('features')
def tiles = []
for (feature in features)
    tiles << gson.fromJson(feature, PathObject)

// The models of this file: recorded for the whole collection ("histobridge": {"model": ...}, so an
// empty file still clears that model's earlier tiles), tile names, else the part before ': ' of
// measurement names.
def prefixes = tiles.collect { it.getName() }.findAll { it } as Set
def info = root.isJsonObject() ? root.getAsJsonObject().get('histobridge') : null
if (info != null && info.isJsonObject() && info.getAsJsonObject().has('model'))
    prefixes << info.getAsJsonObject().get('model').getAsString()
if (prefixes.isEmpty()) {
    tiles.each { t -> t.getMeasurements().keySet().each { n -> if (n.contains(': ')) prefixes << n.split(': ')[0] } }
}

def isOurs = { PathObject o ->
    if (!o.isTile())
        return false
    if (o.getName() != null && prefixes.contains(o.getName()))
        return true
    return o.getMeasurements().keySet().any { n -> prefixes.any { p -> n.startsWith(p + ': ') } }
}
def previous = getDetectionObjects().findAll(isOurs)
if (!previous.isEmpty())
    removeObjects(previous, true)

addObjects(tiles)
resolveHierarchy()
fireHierarchyUpdate()
println "histobridge: '${entry.getImageName()}': removed ${previous.size()} earlier tile(s), " +
        "added ${tiles.size()} from ${file.getName()} (model: ${prefixes.join(', ')})"

/*
 * Test-side stand-in for the few static methods of qupath.lib.scripting.QP that histobridge's
 * scripts call (QP lives in qupath-core-processing, which the headless test build lacks).
 * Each closure does what QP does, on QuPath's real classes, for the image in the binding:
 *   imageData (ImageData), entry (ProjectImageEntry), projectBase (String).
 * Unqualified calls in a Groovy script fall back to closures held in its binding.
 */
import qupath.lib.io.PathIO
import qupath.lib.io.PathIO.GeoJsonExportOptions

def hierarchy = { -> imageData.getHierarchy() }

PROJECT_BASE_DIR = '{%PROJECT}'
resolvePath = { String path -> path.replace(PROJECT_BASE_DIR, projectBase) }
buildFilePath = { String first, String... more ->
    def file = new File(resolvePath(first))
    more.each { part -> file = new File(file, part) }
    file.getAbsolutePath()
}
mkdirs = { String path -> new File(resolvePath(path)).mkdirs() }
getProjectEntry = { -> entry }
getCurrentImageData = { -> imageData }
getAnnotationObjects = { -> hierarchy().getAnnotationObjects() }
getSelectedObjects = { -> hierarchy().getSelectionModel().getSelectedObjects() }
getDetectionObjects = { -> hierarchy().getDetectionObjects() }
addObjects = { Collection objects -> hierarchy().addObjects(objects) }
removeObjects = { Collection objects, boolean keepChildren -> hierarchy().removeObjects(objects, keepChildren) }
resolveHierarchy = { -> hierarchy().resolveHierarchy() }
fireHierarchyUpdate = { -> hierarchy().fireHierarchyChangedEvent(this) }
exportObjectsToGeoJson = { Collection objects, String path, String... options ->
    def opts = options.collect { GeoJsonExportOptions.valueOf(it) } as GeoJsonExportOptions[]
    PathIO.exportObjectsAsGeoJSON(new File(path), objects, opts)
}

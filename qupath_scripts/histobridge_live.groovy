/**
 * Classify the selected annotations (or all of them) of the open image with a running histobridge server
 * (`histobridge serve --project <this project>`), and add the returned tiles under their annotations.
 *
 * The tiles carry one measurement per class ("<model>: <class> probability"), so Measure > Show measurement
 * maps works at once. Running it again replaces this model's earlier tiles inside the sent annotations.
 * Progress goes to QuPath's log. Works with QuPath 0.4 to 0.7: java.net.http and QuPath's GsonTools only.
 */

import com.google.gson.JsonArray
import com.google.gson.JsonElement
import com.google.gson.JsonObject
import com.google.gson.JsonParser
import qupath.lib.io.GsonTools
import qupath.lib.objects.PathObject

import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.time.Duration

// ---- parameters -------------------------------------------------------------------------------------
def SERVER = 'http://127.0.0.1:8321'               // histobridge serve address
def TOKEN = System.getenv('HISTOBRIDGE_TOKEN') ?: ''  // needed when the server is not on loopback
def MODEL = 'classifier'                             // a classifier id from <server>/api/models
def STRIDE_DIV = 1                                   // tile overlap: stride = tile / N (1, 2 or 4)
def WRITE_BACK = false                               // also store the tiles in the project's histobridge folder
def PROJECT_KEY = ''                                 // served project id; empty: this project's folder name
// -----------------------------------------------------------------------------------------------------

def entry = getProjectEntry()
if (entry == null) {
    println 'histobridge: open an image of a QuPath project first'
    return
}
def projectKey = PROJECT_KEY ?: new File(buildFilePath(PROJECT_BASE_DIR)).getName()
def annotations = getSelectedObjects().findAll { it.isAnnotation() }
if (annotations.isEmpty())
    annotations = getAnnotationObjects()
if (annotations.isEmpty()) {
    println "histobridge: '${entry.getImageName()}' has no annotations to classify"
    return
}

def gson = GsonTools.getInstance()
def http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build()
def call = { String method, String path, String body ->
    def builder = HttpRequest.newBuilder(URI.create(SERVER + path)).timeout(Duration.ofMinutes(10))
    if (TOKEN)
        builder.header('Authorization', 'Bearer ' + TOKEN)
    if (body != null)
        builder.header('Content-Type', 'application/json').method(method, HttpRequest.BodyPublishers.ofString(body))
    else
        builder.method(method, HttpRequest.BodyPublishers.noBody())
    def response = http.send(builder.build(), HttpResponse.BodyHandlers.ofString())
    def json = gson.fromJson(response.body(), JsonElement)
    if (response.statusCode() >= 400) {
        def detail = json != null && json.isJsonObject() && json.getAsJsonObject().has('detail') ?
                json.getAsJsonObject().get('detail').getAsString() : response.body()
        throw new RuntimeException("histobridge server: ${response.statusCode()} ${detail}")
    }
    return json
}

def roi = new JsonArray()
// toJson then parse: QuPath's object adapter writes raw JSON, which toJsonTree cannot take
annotations.each { roi.add(JsonParser.parseString(gson.toJson(it, PathObject))) }
def body = new JsonObject()
body.addProperty('project', projectKey)
body.addProperty('image', entry.getID().toString())
body.add('roi', roi)
body.addProperty('model', MODEL)
body.addProperty('stride_div', STRIDE_DIV as int)
body.addProperty('write_back', WRITE_BACK as boolean)

def job = call('POST', '/api/classify', gson.toJson(body)).getAsJsonObject()
def jobId = job.get('id').getAsString()
println "histobridge: classifying ${annotations.size()} annotation(s) of '${entry.getImageName()}' with ${MODEL} (job ${jobId})"
def state = job.get('state').getAsString()
def shown = ''
while (!(state in ['done', 'failed', 'cancelled'])) {
    Thread.sleep(500)
    def status = call('GET', '/api/jobs/' + jobId, null).getAsJsonObject()
    state = status.get('state').getAsString()
    def line = state == 'queued' ? "queued (position ${status.get('queue_position')})" :
            "${status.get('done')} / ${status.get('total')} tiles"
    if (line != shown) {
        println "histobridge: ${line}"
        shown = line
    }
}
if (state != 'done') {
    println "histobridge: job ${jobId} ${state}"
    call('GET', '/api/jobs/' + jobId + '/result', null)  // raises with the server's message
    return
}
def result = call('GET', '/api/jobs/' + jobId + '/result', null).getAsJsonObject()
def prefix = result.getAsJsonObject('histobridge').get('model').getAsString()
def tiles = result.getAsJsonArray('features').collect { gson.fromJson(it, PathObject) }

// This model's earlier tiles are replaced: those at the grid positions just returned, and those centred
// inside the sent annotations (positions no longer tiled). Other objects are left alone.
def position = { PathObject t -> "${Math.round(t.getROI().getBoundsX() * 100)}:${Math.round(t.getROI().getBoundsY() * 100)}" }
def returned = tiles.collect { position(it) } as Set
def inside = { PathObject t ->
    def r = t.getROI()
    annotations.any { a -> a.getROI().contains(r.getCentroidX(), r.getCentroidY()) }
}
def previous = getDetectionObjects().findAll {
    it.isTile() && it.getName() == prefix && (returned.contains(position(it)) || inside(it))
}
if (!previous.isEmpty())
    removeObjects(previous, true)
addObjects(tiles)
resolveHierarchy()
fireHierarchyUpdate()
println "histobridge: '${entry.getImageName()}': removed ${previous.size()} earlier tile(s), added ${tiles.size()} " +
        "(${prefix}); Measure > Show measurement maps > '${prefix}: <class> probability'"

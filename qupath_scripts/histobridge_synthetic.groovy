/**
 * Fetch matched synthetic tiles for the selected annotation from a running histobridge server and save a
 * montage next to the project: one row per tile, real | synthetic (same class) | class-swapped twin, with
 * the classifier's prediction printed in the log.
 *
 * Works with QuPath 0.4 to 0.7: java.net.http, QuPath's GsonTools and javax.imageio only.
 */

import com.google.gson.JsonArray
import com.google.gson.JsonElement
import com.google.gson.JsonObject
import com.google.gson.JsonParser
import qupath.lib.io.GsonTools
import qupath.lib.objects.PathObject

import javax.imageio.ImageIO
import java.awt.image.BufferedImage
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.time.Duration

// ---- parameters -------------------------------------------------------------------------------------
def SERVER = 'http://127.0.0.1:8321'
def TOKEN = System.getenv('HISTOBRIDGE_TOKEN') ?: ''
def GENERATOR = 'generator'                          // a generator id from <server>/api/models
def CLASSIFIER = 'classifier'                        // '' for no predictions
def N = 8                                            // synthetic tiles (and real ones) per annotation
def SEED = 0                                         // first seed
def PROJECT_KEY = ''                                 // served project id; empty: this project's folder name
// -----------------------------------------------------------------------------------------------------

def entry = getProjectEntry()
if (entry == null) {
    println 'histobridge: open an image of a QuPath project first'
    return
}
def annotation = getSelectedObjects().find { it.isAnnotation() }
if (annotation == null) {
    println 'histobridge: select one annotation first'
    return
}
def projectKey = PROJECT_KEY ?: new File(buildFilePath(PROJECT_BASE_DIR)).getName()
def gson = GsonTools.getInstance()
def http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build()
def send = { String method, String path, String body, boolean bytes ->
    def builder = HttpRequest.newBuilder(URI.create(SERVER + path)).timeout(Duration.ofMinutes(10))
    if (TOKEN)
        builder.header('Authorization', 'Bearer ' + TOKEN)
    if (body != null)
        builder.header('Content-Type', 'application/json').method(method, HttpRequest.BodyPublishers.ofString(body))
    else
        builder.method(method, HttpRequest.BodyPublishers.noBody())
    def response = http.send(builder.build(), HttpResponse.BodyHandlers.ofByteArray())
    if (response.statusCode() >= 400) {
        def text = new String(response.body(), 'UTF-8')
        def json = gson.fromJson(text, JsonElement)
        def detail = json != null && json.isJsonObject() && json.getAsJsonObject().has('detail') ?
                json.getAsJsonObject().get('detail').getAsString() : text
        throw new RuntimeException("histobridge server: ${response.statusCode()} ${detail}")
    }
    return bytes ? response.body() : gson.fromJson(new String(response.body(), 'UTF-8'), JsonElement)
}

def roi = new JsonArray()
// toJson then parse: QuPath's object adapter writes raw JSON, which toJsonTree cannot take
roi.add(JsonParser.parseString(gson.toJson(annotation, PathObject)))
def body = new JsonObject()
body.addProperty('project', projectKey)
body.addProperty('image', entry.getID().toString())
body.add('roi', roi)
body.addProperty('generator', GENERATOR)
if (CLASSIFIER)
    body.addProperty('classifier', CLASSIFIER)
body.addProperty('n', N as int)
body.addProperty('seed', SEED as int)

def job = send('POST', '/api/synthesize', gson.toJson(body), false).getAsJsonObject()
def jobId = job.get('id').getAsString()
println "histobridge: synthesising for '${annotation.getDisplayedName()}' (job ${jobId})"
def state = job.get('state').getAsString()
while (!(state in ['done', 'failed', 'cancelled'])) {
    Thread.sleep(500)
    state = send('GET', '/api/jobs/' + jobId, null, false).getAsJsonObject().get('state').getAsString()
}
def result = send('GET', '/api/jobs/' + jobId + '/result', null, false).getAsJsonObject()
def base = result.get('image_base').getAsString()
def fetch = { String name -> ImageIO.read(new ByteArrayInputStream(send('GET', base + name, null, true))) }

def rows = []
result.getAsJsonArray('regions').each { regionEl ->
    def region = regionEl.getAsJsonObject()
    def real = region.getAsJsonArray('real')
    def synth = region.getAsJsonArray('tiles')
    if (region.has('problem'))
        println "histobridge: ${region.get('problem').getAsString()}"
    for (int i = 0; i < synth.size(); i++) {
        def t = synth.get(i).getAsJsonObject()
        def cells = [i < real.size() ? fetch(real.get(i).getAsJsonObject().get('image').getAsString()) : null,
                     fetch(t.get('image').getAsString()), fetch(t.get('swapped').getAsString())]
        rows << cells
        def pred = t.has('prediction') ? " prediction ${t.get('prediction')} / swapped ${t.get('swap_prediction')}" : ''
        println "histobridge: seed ${t.get('seed')} ${t.get('class').getAsString()} -> ${t.get('swap_class').getAsString()}${pred}"
    }
}
if (rows.isEmpty()) {
    println 'histobridge: the server returned no synthetic tiles for this annotation'
    return
}
int px = rows.collect { r -> r.findAll { it != null }.collect { it.getWidth() }.max() }.max()
def montage = new BufferedImage(3 * px + 8, rows.size() * (px + 4), BufferedImage.TYPE_INT_RGB)
def g = montage.createGraphics()
g.setColor(java.awt.Color.WHITE)
g.fillRect(0, 0, montage.getWidth(), montage.getHeight())
rows.eachWithIndex { r, i ->
    r.eachWithIndex { img, j -> if (img != null) g.drawImage(img, j * (px + 4), i * (px + 4), px, px, null) }
}
g.dispose()
def folder = new File(buildFilePath(PROJECT_BASE_DIR, 'histobridge', 'live'))
folder.mkdirs()
def out = new File(folder, "synthetic_${entry.getID()}_${System.currentTimeMillis()}.png")
def tmp = new File(folder, out.getName() + '.part')
ImageIO.write(montage, 'png', tmp)
tmp.renameTo(out)
println "histobridge: montage (real | synthetic | swapped) saved to ${out.getAbsolutePath()}"

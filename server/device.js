'use strict';
// A simulated device: real PouchDB databases (LevelDB on disk, as on a phone's app storage) that replicate
// with the server through the CouchDB replication protocol, driven by JSON lines on stdin:
//   {"id": 1, "op": "put", "db": "meta", "doc": {...}}            -> {"id": 1, "ok": true, "result": {...}}
// ops: put, bulk, get, remove, allDocs, replicate (push | pull, to a remote URL; optional timeout_ms), live (a
// continuous pull), stopLive, waitFor (a document to arrive locally), info, close.
// A failing op answers {"id", "ok": false, "error": {"status", "name", "message"}}; the device goes on.

var path = require('path');
var readline = require('readline');
var PouchDB = require('pouchdb-core')
  .plugin(require('pouchdb-adapter-http'))
  .plugin(require('pouchdb-replication'))
  .plugin(require('pouchdb-adapter-leveldb'));

var dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: node device.js DIR\n');
  process.exit(2);
}
var LocalDB = PouchDB.defaults({ prefix: path.resolve(dir) + path.sep });
var dbs = {};
var lives = {}; // db name -> a live pull replication

function db(name) {
  if (!dbs[name]) { dbs[name] = new LocalDB(name); }
  return dbs[name];
}

function remote(url) {
  return new PouchDB(url, { skip_setup: true });
}

// Checkpoints on the device's side only, as CHT's app keeps them (its "target checkpointer"): a pull's target and
// a push's source are the local database, so no batch costs the server a _local read and write (with 50 devices
// syncing at once those were most of the server's writes).
function localSide(direction) { return direction === 'pull' ? 'target' : 'source'; }

// A replication that has not settled within timeoutMs (when given) is cancelled and reported as an error
// (name 'timeout'), so that its caller can retry as an app would; without a timeout it may take as long as it takes.
function settled(rep, timeoutMs) {
  if (!timeoutMs) { return rep; }
  var timer;
  var expired = new Promise(function (resolve, reject) {
    timer = setTimeout(function () {
      rep.cancel();
      var err = new Error('the replication did not settle within ' + timeoutMs + ' ms: cancelled');
      err.name = 'timeout';
      err.status = 408;
      reject(err);
    }, timeoutMs);
  });
  return Promise.race([rep, expired]).then(function (res) {
    clearTimeout(timer);
    return res;
  }, function (err) {
    clearTimeout(timer);
    throw err;
  });
}

var ops = {
  put: function (m) { return db(m.db).put(m.doc, { force: !!m.force }); },
  bulk: function (m) { return db(m.db).bulkDocs(m.docs, m.new_edits === false ? { new_edits: false } : {}); },
  get: function (m) { return db(m.db).get(m.docId, m.options || {}); },
  remove: function (m) {
    return db(m.db).get(m.docId).then(function (doc) { return db(m.db).remove(doc); });
  },
  allDocs: function (m) {
    return db(m.db).allDocs({ include_docs: true, conflicts: !!m.conflicts }).then(function (res) {
      return res.rows.filter(function (r) { return r.id.indexOf('_design/') !== 0; }).map(function (r) { return r.doc; });
    });
  },
  info: function (m) { return db(m.db).info(); },
  replicate: function (m) {
    var local = db(m.db);
    var other = remote(m.url);
    var opts = { batch_size: m.batch_size || 100, retry: false, checkpoint: localSide(m.direction) };
    var rep = m.direction === 'pull' ? PouchDB.replicate(other, local, opts) : PouchDB.replicate(local, other, opts);
    return settled(rep, m.timeout_ms).then(function (res) {
      return {
        ok: res.ok, status: res.status, docs_read: res.docs_read, docs_written: res.docs_written,
        doc_write_failures: res.doc_write_failures,
        errors: (res.errors || []).map(function (e) { return { id: e.id, name: e.name, status: e.status, message: e.message }; })
      };
    });
  },
  // live sync, as an app keeps it while open: a continuous pull (longpoll _changes, retried with back-off)
  live: function (m) {
    if (lives[m.db]) { lives[m.db].cancel(); }
    var rep = PouchDB.replicate(remote(m.url), db(m.db),
      { live: true, retry: true, batch_size: m.batch_size || 100, checkpoint: localSide('pull') });
    rep.on('error', function () { /* a live replication with retry only errors when it gives up: ends */ });
    lives[m.db] = rep;
    return { live: true };
  },
  stopLive: function (m) {
    var rep = lives[m.db];
    delete lives[m.db];
    if (rep) { rep.cancel(); }
    return { stopped: !!rep };
  },
  // wait until a document is in the local database (brought by a live pull): {found, ms}
  waitFor: function (m) {
    var local = db(m.db);
    var started = Date.now();
    return new Promise(function (resolve) {
      var done = false;
      var feed = local.changes({ live: true, since: 'now', doc_ids: [m.docId] });
      var timer = setTimeout(function () { finish(false); }, m.timeout_ms || 60000);
      function finish(found) {
        if (done) { return; }
        done = true;
        clearTimeout(timer);
        feed.cancel();
        resolve({ found: found, ms: Date.now() - started });
      }
      feed.on('change', function (c) { if (!c.deleted) { finish(true); } });
      local.get(m.docId).then(function () { finish(true); }, function () { /* not yet */ });
    });
  },
  close: function () {
    Object.keys(lives).forEach(function (n) { lives[n].cancel(); });
    var names = Object.keys(dbs);
    return Promise.all(names.map(function (n) { return dbs[n].close(); })).then(function () { return { closed: names.length }; });
  }
};

function answer(msg) { process.stdout.write(JSON.stringify(msg) + '\n'); }

var queue = Promise.resolve();
readline.createInterface({ input: process.stdin }).on('line', function (line) {
  if (!line.trim()) { return; }
  var m;
  try { m = JSON.parse(line); } catch (e) { return answer({ id: null, ok: false, error: { message: 'bad json' } }); }
  // one op at a time, in order, as a single app would
  queue = queue.then(function () {
    var op = ops[m.op];
    if (!op) { return answer({ id: m.id, ok: false, error: { message: 'unknown op ' + m.op } }); }
    return Promise.resolve().then(function () { return op(m); }).then(function (result) {
      answer({ id: m.id, ok: true, result: result });
      if (m.op === 'close') { process.exit(0); }
    }, function (err) {
      answer({ id: m.id, ok: false, error: { status: err.status, name: err.name, message: err.message || String(err) } });
    });
  });
}).on('close', function () {
  queue.then(function () { process.exit(0); });
});

'use strict';
// fieldsync's embedded CouchDB-compatible server: express-pouchdb (PouchDB Server's engine) on LevelDB,
// bound to loopback only, with a server admin, behind a guard that answers what CouchDB 3 answers where
// express-pouchdb is fragile or too open.
//
// Usage: node server.js --port PORT --data DIR
// The admin account comes from the environment (never argv, which other users can read with ps):
//   FIELDSYNC_ADMIN_USER, FIELDSYNC_ADMIN_PASSWORD
// Log: DIR/log.txt (express-pouchdb's), this entry's own lines on stdout/stderr.

var path = require('path');
var fs = require('fs');
var crypto = require('crypto');
var Module = require('module');
var express = require('express');

// pouchdb-validation 4.2.0 overwrites the _revisions of every document it validates with the stored document's
// (`newDoc._revisions = (oldDoc || {})._revisions`). A replicated update (_bulk_docs with new_edits:false) then
// carries a revision history that does not lead to its own _rev, and PouchDB drops it without an error: any
// database with a validate_doc_update silently lost every replicated edit of an existing document. Load the
// module with that line fixed (keep the history the writer sent; fill it in only when there is none), before
// express-pouchdb requires it.
(function patchValidation() {
  var from = path.dirname(require.resolve('express-pouchdb'));
  var file = require.resolve('pouchdb-validation', { paths: [from] });
  var broken = 'newDoc._revisions = (oldDoc || {})._revisions;';
  var source = fs.readFileSync(file, 'utf8');
  if (source.indexOf(broken) === -1) { return; }
  var fixed = source.replace(broken, 'if (!newDoc._revisions) { newDoc._revisions = (oldDoc || {})._revisions; }');
  var patched = new Module(file, module);
  patched.filename = file;
  patched.paths = Module._nodeModulePaths(path.dirname(file));
  patched._compile(fixed, file);
  patched.loaded = true;
  require.cache[file] = patched;
})();
var expressPouchDB = require('express-pouchdb');
var PouchDB = require('pouchdb-core')
  .plugin(require('pouchdb-adapter-http'))
  .plugin(require('pouchdb-replication'))
  .plugin(require('pouchdb-mapreduce'))
  .plugin(require('pouchdb-adapter-leveldb'));

var HOST = '127.0.0.1';

function parseArgs(argv) {
  var out = { port: 5984, data: '.fieldsync' };
  for (var i = 2; i < argv.length; i++) {
    if (argv[i] === '--port') { out.port = parseInt(argv[++i], 10); }
    else if (argv[i] === '--data') { out.data = argv[++i]; }
    else { fail('unknown argument ' + argv[i]); }
  }
  if (!(out.port > 0 && out.port < 65536)) { fail('--port must be a TCP port number'); }
  return out;
}

function fail(message) {
  process.stderr.write('fieldsync-server: ' + message + '\n');
  process.exit(2);
}

var args = parseArgs(process.argv);
var adminUser = process.env.FIELDSYNC_ADMIN_USER;
var adminPassword = process.env.FIELDSYNC_ADMIN_PASSWORD;
if (!adminUser || !adminPassword) {
  fail('FIELDSYNC_ADMIN_USER and FIELDSYNC_ADMIN_PASSWORD must be set: the server never runs as an admin party');
}

var dataDir = path.resolve(args.data);
var dbDir = path.join(dataDir, 'db') + path.sep;
fs.mkdirSync(dbDir, { recursive: true });

var pouchApp = expressPouchDB(PouchDB.defaults({ prefix: dbDir }), {
  configPath: path.join(dataDir, 'config.json'),
  logPath: path.join(dataDir, 'log.txt'),
  mode: 'fullCouchDB',
  // Fauxton (the pouchdb-fauxton package, a dependency of express-pouchdb) is served at /_utils/. The
  // replicator daemon is not used by fieldsync (its sync worker replicates) and would keep feeds open on
  // every database.
  overrideMode: { exclude: ['replicator', 'routes/replicate'] }
});

// ---------------------------------------------------------------------------------------------------
// The guard. express-pouchdb lets an anonymous client list every database and, once an admin exists,
// an anonymous PUT /{db} kills the process ("db.info is not a function"). CouchDB 3 answers 401 to both.
// Only server admins may create or delete databases, list them, or reach server-wide endpoints; we can
// tell the admin's name from the Basic credentials or the AuthSession cookie, and express-pouchdb still
// checks the password after us.

var SERVER_ADMIN_PATHS = ['/_all_dbs', '/_db_updates', '/_config', '/_active_tasks', '/_log', '/_stats',
  '/_replicate', '/_restart', '/_membership', '/_cluster_setup', '/_node'];

function requestUserName(req) {
  var header = req.headers.authorization || '';
  if (header.indexOf('Basic ') === 0) {
    var decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    var colon = decoded.indexOf(':');
    return colon >= 0 ? decoded.slice(0, colon) : decoded;
  }
  var cookie = req.headers.cookie || '';
  var match = /(?:^|;\s*)AuthSession=([^;]+)/.exec(cookie);
  if (match) {
    try {
      var raw = Buffer.from(decodeURIComponent(match[1]), 'base64').toString('latin1');
      return raw.split(':')[0];
    } catch (e) {
      return null;
    }
  }
  return null;
}

function isAdminName(name) {
  if (!name) { return false; }
  var admins = pouchApp.couchConfig.getSection('admins') || {};
  return Object.prototype.hasOwnProperty.call(admins, name);
}

function deny(res, status, error, reason) {
  res.status(status).set('Content-Type', 'application/json').send(JSON.stringify({ error: error, reason: reason }));
}

function guard(req, res, next) {
  var name = requestUserName(req);
  var admin = isAdminName(name);
  var p = req.path;
  var serverWide = SERVER_ADMIN_PATHS.some(function (prefix) {
    return p === prefix || p.indexOf(prefix + '/') === 0;
  });
  // PUT or DELETE on /{db} (one path segment, not a special _ endpoint) creates or deletes a database.
  var dbLevel = /^\/[^/]+\/?$/.test(p) && p.replace(/\/$/, '') !== '/_session' &&
    (req.method === 'PUT' || req.method === 'DELETE');
  if ((serverWide || dbLevel) && !admin) {
    if (!name) {
      return deny(res, 401, 'unauthorized', 'Authentication required.');
    }
    return deny(res, 401, 'unauthorized', 'You are not a server admin.');
  }
  next();
}

var app = express();
app.disable('x-powered-by');
app.use(guard);
app.use(pouchApp);

// The admin account: set (and hashed by express-pouchdb) before the first request is served. When the stored
// hash already matches the password, nothing is written: express-pouchdb saves its config file through one
// temporary name, and two saves at once (ours and its own first-start writes) can race on it.
function storedHashMatches(stored, password) {
  var m = /^-pbkdf2-([0-9a-f]+),([0-9a-f]+),([0-9]+)$/.exec(stored || '');
  if (!m) { return false; }
  var derived = crypto.pbkdf2Sync(password, m[2], parseInt(m[3], 10), m[1].length / 2, 'sha1').toString('hex');
  return derived === m[1];
}

function setAdmin(attempt) {
  attempt = attempt || 1;
  return new Promise(function (resolve, reject) {
    var current = (pouchApp.couchConfig.getSection('admins') || {})[adminUser];
    if (storedHashMatches(current, adminPassword)) {
      return resolve();
    }
    pouchApp.couchConfig.set('admins', adminUser, adminPassword, function (err) {
      return err ? reject(err) : resolve();
    });
  }).catch(function (err) {
    if (attempt >= 5) { throw err; }
    return new Promise(function (r) { setTimeout(r, 100 * attempt); }).then(function () { return setAdmin(attempt + 1); });
  });
}

// Never leave a half-alive process: an unexpected error in a route is logged and the server goes on
// answering (express-pouchdb's own errors become 500s); an error we cannot recover from exits non-zero.
process.on('uncaughtException', function (err) {
  process.stderr.write('fieldsync-server: uncaught ' + (err && err.stack || err) + '\n');
});
process.on('unhandledRejection', function (err) {
  process.stderr.write('fieldsync-server: unhandled rejection ' + (err && err.stack || err) + '\n');
});

function shutdown() { process.exit(0); }
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

setAdmin().then(function () {
  var server = app.listen(args.port, HOST, function () {
    process.stdout.write('fieldsync-server listening on http://' + HOST + ':' + args.port + '/ data ' + dataDir + '\n');
  });
  server.on('error', function (e) {
    if (e.code === 'EADDRINUSE') { fail('port ' + args.port + ' on ' + HOST + ' is already in use'); }
    fail('cannot listen: ' + e.message);
  });
}, function (err) {
  fail('cannot set the admin account: ' + err);
});

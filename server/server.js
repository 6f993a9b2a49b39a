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

// Two modules of express-pouchdb 4.2 are loaded with a line fixed, before express-pouchdb requires them:
//
// pouchdb-validation 4.2.0 overwrites the _revisions of every document it validates with the stored document's
// (`newDoc._revisions = (oldDoc || {})._revisions`). A replicated update (_bulk_docs with new_edits:false) then
// carries a revision history that does not lead to its own _rev, and PouchDB drops it without an error: any
// database with a validate_doc_update silently lost every replicated edit of an existing document. Keep the
// history the writer sent; fill it in only when there is none.
//
// express-pouchdb's create-or-delete-dbs runs every database open, creation and deletion on one promise chain
// (`promiseChain = promiseChain.then(fun)`): the first of them that fails (a DELETE /{db} that PouchDB refuses)
// leaves the chain rejected, every later open rejects without an answer, and every later request on a database
// hangs until restart. Keep the chain going after a failure; the failure still goes to its own caller.
//
// pouchdb-validation also reads every design document of the database (allDocs with their bodies) and compiles
// their validate_doc_update functions again for *each document* of a _bulk_docs: into main, whose design
// documents hold the views' code, that was 120 us of the server's CPU per document written, 40% more than the
// write itself (bench/server_write_baselines.py, session 19). Read and compile them once per request, as CouchDB
// does (it takes a database's validation functions when the update starts): the request's options object is
// the one every document of it is validated with.
function patchModule(fromDir, request, fixes) {
  var file = require.resolve(request, { paths: [fromDir] });
  var source = fs.readFileSync(file, 'utf8');
  var changed = fixes.reduce(function (text, fix) {
    return text.indexOf(fix[0]) === -1 ? text : text.replace(fix[0], fix[1]);
  }, source);
  if (changed === source) { return; }
  var patched = new Module(file, module);
  patched.filename = file;
  patched.paths = Module._nodeModulePaths(path.dirname(file));
  patched._compile(changed, file);
  patched.loaded = true;
  require.cache[file] = patched;
}
(function patchExpressPouchDB() {
  var from = path.dirname(require.resolve('express-pouchdb'));
  patchModule(from, 'pouchdb-validation', [
    ['newDoc._revisions = (oldDoc || {})._revisions;',
      'if (!newDoc._revisions) { newDoc._revisions = (oldDoc || {})._revisions; }'],
    ['return getValidationFunctions(db).then(function (validationFuncs) {',
      'return (options.__fieldsyncValidation || Object.defineProperty(options, "__fieldsyncValidation",\n' +
      '    { value: getValidationFunctions(db) }).__fieldsyncValidation).then(function (validationFuncs) {']
  ]);
  patchModule(from, './create-or-delete-dbs', [
    ['promiseChain = promiseChain.then(fun);\n  return promiseChain;',
      'var result = promiseChain.then(fun);\n  promiseChain = result.catch(function () {});\n  return result;']
  ]);
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

// config.json holds the admin's hash and the cookie secret, the LevelDB files every document, log.txt the
// requests: all private to this account. New files get 0600 and directories 0700 (umask), and what an earlier
// version left readable is closed at start.
process.umask(0o077);
var dataDir = path.resolve(args.data);
var dbDir = path.join(dataDir, 'db') + path.sep;
fs.mkdirSync(dbDir, { recursive: true });

function makePrivate(p, recursive) {
  var stat;
  try { stat = fs.lstatSync(p); } catch (e) { return; }
  if (stat.isSymbolicLink()) { return; }
  try { fs.chmodSync(p, stat.isDirectory() ? 0o700 : (stat.mode & 0o700) || 0o600); } catch (e) {
    process.stderr.write('fieldsync-server: cannot make ' + p + ' private: ' + e.message + '\n');
  }
  if (stat.isDirectory() && recursive) {
    fs.readdirSync(p).forEach(function (entry) { makePrivate(path.join(p, entry), true); });
  }
}
makePrivate(dataDir, false);
['db', 'config.json', 'log.txt', 'server.out', 'server.pid', 'admin.json'].forEach(function (name) {
  makePrivate(path.join(dataDir, name), true);
});

var LocalPouchDB = PouchDB.defaults({ prefix: dbDir });
var pouchApp = expressPouchDB(LocalPouchDB, {
  configPath: path.join(dataDir, 'config.json'),
  logPath: path.join(dataDir, 'log.txt'),
  mode: 'fullCouchDB',
  // Fauxton (the pouchdb-fauxton package, a dependency of express-pouchdb) is served at /_utils/. The
  // replicator daemon is not used by fieldsync (its sync worker replicates) and would keep feeds open on
  // every database.
  overrideMode: { exclude: ['replicator', 'routes/replicate'] }
});

// The guard (guard.js): every request is authenticated and decided before express-pouchdb sees it.
var guard = require('./guard')(pouchApp, LocalPouchDB);

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

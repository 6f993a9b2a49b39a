'use strict';
// The embedded server's guard: default-deny, answering what Apache CouchDB 3.5 answers.
//
// express-pouchdb 4.2 checks a database's _security only on the routes that pass the session to PouchDB
// (utils.makeOpts); on the others (_find, _explain, _index, _bulk_get, ...) pouchdb-security sees no user and
// lets everything through ("admin party"). It keeps _security in the local document `_local/_security`, which a
// member may overwrite like any other local document (PUT, COPY or _bulk_docs). It makes a user _admin while
// they touch their own _users document (so they may give themselves any role). So this guard does not trust any
// route to check anything: it authenticates the request itself and decides every request before
// express-pouchdb sees it.
//
// Authentication (as CouchDB: cookie first, then Basic):
// - an AuthSession cookie is verified (HMAC-SHA1 over "name:HEXTIME" with the server secret followed by the
//   user's salt, not older than couch_httpd_auth/timeout); one that does not verify is ignored (removed from the
//   request, so express-pouchdb cannot read more into it than we did);
// - Basic credentials are verified with PBKDF2 against the config admins, else the user's _users document;
//   wrong credentials are refused with 401 (as CouchDB), other Authorization schemes are ignored;
// - whatever is not verified is anonymous. The request reaches express-pouchdb carrying only the credential we
//   verified (the other header is removed), so it can only arrive at the same user or at anonymous.
//
// Authorization, for anyone who is not a server admin (server admins pass):
// - server: `/`, `/_session`, `/_uuids`, `/_up`, and GET/HEAD of Fauxton's static files at `/_utils` are open;
//   every other `/_...` path is for server admins (401 "You are not a server admin.");
// - databases whose name starts with `_` (_users, _replicator, ...) are for server admins (CouchDB 3's _users is
//   admin-only: its _security has members ["_admin"] and cannot be edited);
// - a database that does not exist: 404;
// - creating or deleting a database, _purge, anything under `_node/`, any URL express-pouchdb would rewrite
//   (`/_design/x/_rewrite/` anywhere in it), unknown `/{db}/_something` endpoints: server admins only;
// - everything else on `/{db}...` needs the database's _security: members (names or roles; none = public, as
//   CouchDB) may read and write documents and local documents; design documents, _security, _index creation,
//   _compact, _view_cleanup, _temp_view and _revs_limit changes need a database admin; `_local/_security` can
//   only be read. The document ids a write names (the path, a body `_id`, `?id=`, a COPY Destination, every
//   `_id` of a _bulk_docs) are all checked; a multipart/related document upload (whose id is inside the body)
//   is for server admins only.

var crypto = require('crypto');
var path = require('path');

var epLib = path.dirname(require.resolve('express-pouchdb'));
var basicAuth = require(require.resolve('basic-auth', { paths: [epLib] }));
var bodyParser = require(require.resolve('body-parser', { paths: [epLib] }));
var cleanFilename = require(path.join(epLib, 'clean-filename'));
var getOrCreateDB = require(path.join(epLib, 'create-or-delete-dbs')).getOrCreateDB;

var AUTH = 'couch_httpd_auth';
var OPEN_SERVER_PATHS = { _session: 'any', _uuids: 'any', _up: 'any', _utils: 'read' };
var MEMBER_ENDPOINTS = ['_all_docs', '_changes', '_bulk_get', '_find', '_explain', '_revs_diff', '_missing_revs',
  '_design_docs', '_local_docs', '_ensure_full_commit'];
var DB_ADMIN_ENDPOINTS = ['_compact', '_view_cleanup', '_temp_view'];
var SYSTEM_DBS = ['_users', '_replicator', '_global_changes'];
var DESIGN_FUNCTIONS = ['_view', '_info', '_show', '_list', '_update'];
// express-pouchdb's rewrite middleware looks for this anywhere in the URL (it is not anchored).
var REWRITE_RE = /\/([^\/]*)\/_design\/([^\/]*)\/_rewrite\/([^?]*)/;
var MAX_ITERATIONS = 100000; // a stored hash asking for more would block the event loop: it does not verify
var READ_METHODS = { GET: true, HEAD: true };

function GuardError(status, error, reason) {
  this.status = status;
  this.error = error;
  this.reason = reason;
}

function refuse(status, error, reason) { throw new GuardError(status, error, reason); }

// ---------------------------------------------------------------------------------------------------------
// Authentication

function parsePbkdf2Admin(stored) {
  var m = /^-pbkdf2-([0-9a-f]+),([0-9a-f]+),([0-9]+)$/.exec(stored || '');
  if (!m) { return null; }
  return { derived_key: m[1], salt: m[2], iterations: parseInt(m[3], 10) };
}

function pbkdf2Matches(password, record) {
  return new Promise(function (resolve) {
    var key = record && record.derived_key;
    var salt = record && record.salt;
    var iterations = record && record.iterations;
    if (typeof key !== 'string' || !/^[0-9a-f]+$/.test(key) || key.length % 2 || typeof salt !== 'string' ||
        !(Number.isInteger(iterations) && iterations > 0 && iterations <= MAX_ITERATIONS) ||
        (record.password_scheme !== undefined && record.password_scheme !== 'pbkdf2') ||
        (record.pbkdf2_prf !== undefined && record.pbkdf2_prf !== 'sha')) {
      return resolve(false);
    }
    crypto.pbkdf2(String(password), salt, iterations, key.length / 2, 'sha1', function (err, derived) {
      if (err) { return resolve(false); }
      resolve(crypto.timingSafeEqual(derived, Buffer.from(key, 'hex')));
    });
  });
}

function makeAuthenticator(pouchApp, PouchDB) {
  var usersDb = null;
  var usersDbName = null;

  function config() { return pouchApp.couchConfig; }

  function getUsersDb() {
    var name = config().get(AUTH, 'authentication_db') || '_users';
    if (!usersDb || usersDbName !== name) {
      usersDb = new PouchDB(name);
      usersDbName = name;
    }
    return usersDb;
  }

  // The credentials record of a name: a config admin, else a _users document (never one with conflicts).
  function lookup(name) {
    if (typeof name !== 'string' || !name) { return Promise.resolve(null); }
    var admins = config().getSection('admins') || {};
    if (Object.prototype.hasOwnProperty.call(admins, name)) {
      var admin = parsePbkdf2Admin(admins[name]);
      return Promise.resolve(admin ? Object.assign(admin, { name: name, roles: ['_admin'] }) : null);
    }
    return getUsersDb().get('org.couchdb.user:' + name, { conflicts: true }).then(function (doc) {
      if (!doc || doc.type !== 'user' || doc.name !== name || (doc._conflicts || []).length) { return null; }
      var roles = Array.isArray(doc.roles) ? doc.roles.filter(function (r) { return typeof r === 'string'; }) : [];
      return { name: name, roles: roles, derived_key: doc.derived_key, salt: doc.salt, iterations: doc.iterations,
        password_scheme: doc.password_scheme, pbkdf2_prf: doc.pbkdf2_prf };
    }, function () { return null; });
  }

  function verifyCookie(value) {
    var raw;
    try {
      raw = Buffer.from(decodeURIComponent(value).replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    } catch (e) {
      return Promise.resolve(null);
    }
    var first = raw.indexOf(0x3a);
    var second = first < 0 ? -1 : raw.indexOf(0x3a, first + 1);
    if (first <= 0 || second < 0) { return Promise.resolve(null); }
    var name = raw.slice(0, first).toString('utf8');
    var stamp = raw.slice(first + 1, second).toString('latin1');
    var mac = raw.slice(second + 1);
    if (!/^[0-9A-Fa-f]{1,12}$/.test(stamp) || mac.length !== 20) { return Promise.resolve(null); }
    var issued = parseInt(stamp, 16);
    var timeout = Number(config().get(AUTH, 'timeout')) || 600;
    if (!(Math.round(Date.now() / 1000) < issued + timeout)) { return Promise.resolve(null); }
    var secret = config().get(AUTH, 'secret');
    if (typeof secret !== 'string' || !secret) { return Promise.resolve(null); }
    return lookup(name).then(function (record) {
      if (!record || typeof record.salt !== 'string') { return null; }
      var expected = crypto.createHmac('sha1', secret + record.salt)
        .update(raw.slice(0, second)).digest();
      return crypto.timingSafeEqual(expected, mac) ? { name: record.name, roles: record.roles, via: 'cookie' } : null;
    });
  }

  // -> {name, roles, via} or {name: null, roles: []}; refuses wrong Basic credentials with 401.
  // Leaves on the request only the credential it verified.
  return function authenticate(req) {
    var cookieHeader = req.headers.cookie || '';
    var match = /(?:^|;\s*)AuthSession=([^;]*)/.exec(cookieHeader);
    var fromCookie = match && match[1] ? verifyCookie(match[1].trim()) : Promise.resolve(null);
    return fromCookie.then(function (user) {
      if (user) {
        delete req.headers.authorization;
        return user;
      }
      delete req.headers.cookie;
      var header = req.headers.authorization;
      if (!header) { return { name: null, roles: [] }; }
      var creds = basicAuth.parse(header);
      if (!creds) {
        delete req.headers.authorization; // another scheme: ignored, as CouchDB does
        return { name: null, roles: [] };
      }
      return lookup(creds.name).then(function (record) {
        return record ? pbkdf2Matches(creds.pass, record).then(function (ok) { return ok ? record : null; }) : null;
      }).then(function (record) {
        if (!record) { refuse(401, 'unauthorized', 'Name or password is incorrect.'); }
        return { name: record.name, roles: record.roles, via: 'basic' };
      });
    });
  };
}

// ---------------------------------------------------------------------------------------------------------
// Authorization

function isServerAdmin(user) { return user.roles.indexOf('_admin') !== -1; }

function section(security, name) {
  var s = (security && typeof security[name] === 'object' && security[name]) || {};
  return {
    names: Array.isArray(s.names) ? s.names : [],
    roles: Array.isArray(s.roles) ? s.roles : []
  };
}

function isIn(user, s) {
  return (user.name !== null && s.names.indexOf(user.name) !== -1) ||
    user.roles.some(function (role) { return s.roles.indexOf(role) !== -1; });
}

function isDbAdmin(user, security) { return isServerAdmin(user) || isIn(user, section(security, 'admins')); }

function isMember(user, security) {
  if (isDbAdmin(user, security)) { return true; }
  var members = section(security, 'members');
  if (!members.names.length && !members.roles.length) { return true; } // no members: public, as in CouchDB
  return isIn(user, members);
}

function notServerAdmin() { refuse(401, 'unauthorized', 'You are not a server admin.'); }

function decode(segment) {
  try {
    return decodeURIComponent(segment);
  } catch (e) {
    return refuse(400, 'bad_request', 'Invalid URL encoding.');
  }
}

// What writing a document with this id needs.
function idNeed(id) {
  if (typeof id !== 'string') { return 'invalid'; }
  if (id.indexOf('_design/') === 0) { return 'db_admin'; }
  if (id === '_local/_security') { return 'security'; }
  if (id.indexOf('_local/') === 0) { return 'member'; }
  if (id.charAt(0) === '_') { return 'invalid'; }
  return 'member';
}

function jsonQueryValue(value) {
  // express-pouchdb JSON-parses every query parameter before its routes see it
  if (typeof value !== 'string') { return value; }
  try { return JSON.parse(value); } catch (e) { return value; }
}

// The rule for a request: {kind: 'open'|'server_admin'|'db', db, need, ids(body) -> [id...]}
function classify(req) {
  var method = req.method;
  if (REWRITE_RE.test(req.url)) { return { kind: 'server_admin' }; }
  if (req.path === '/') { return { kind: 'open' }; }
  var parts = req.path.split('/').slice(1);
  if (parts.length > 1 && parts[parts.length - 1] === '') { parts.pop(); }
  if (parts.some(function (s) { return s === ''; })) { return { kind: 'server_admin' }; }
  var open = OPEN_SERVER_PATHS[parts[0]];
  if (open === 'any' || (open === 'read' && READ_METHODS[method])) { return { kind: 'open' }; }
  var db = cleanFilename(decode(parts[0]));
  if (db.charAt(0) === '_' || parts[0].charAt(0) === '_') {
    return { kind: SYSTEM_DBS.indexOf(db) !== -1 ? 'system_db' : 'server_admin' };
  }
  var rest = parts.slice(1);
  var rule = { kind: 'db', db: db, need: 'member', bodyIds: null };
  if (!rest.length) {
    if (method === 'PUT' || method === 'DELETE') { return { kind: 'server_admin' }; }
    if (method === 'POST') {
      rule.bodyIds = function (body) { return body && body._id ? [body._id] : []; };
    }
    return rule;
  }
  // a multipart/related PUT takes the document, its _id included, from the body, which we do not parse
  if (method === 'PUT' && /^multipart\/related/i.test(req.headers['content-type'] || '')) {
    return { kind: 'server_admin' };
  }
  var r0 = rest[0];
  if (r0 === '_design') {
    if (rest.length >= 3 && DESIGN_FUNCTIONS.indexOf(rest[2]) !== -1) { return rule; }
    if (!READ_METHODS[method]) { rule.need = 'db_admin'; }
    return rule;
  }
  if (r0 === '_local') {
    var localId = '_local/' + decode(rest.slice(1).join('/'));
    if (!READ_METHODS[method]) {
      rule.need = idNeed(localId) === 'security' ? 'security' : 'member';
      if (method === 'PUT') { rule.bodyIds = putIds(req, localId); }
      if (method === 'COPY') { return { kind: 'server_admin' }; }
    }
    return rule;
  }
  if (r0.charAt(0) === '_') {
    if (MEMBER_ENDPOINTS.indexOf(r0) !== -1) { return rule; }
    if (r0 === '_bulk_docs') {
      rule.bodyIds = function (body) {
        if (!body || !Array.isArray(body.docs)) { refuse(400, 'bad_request', "Missing JSON list of 'docs'"); }
        return body.docs.filter(function (doc) {
          return doc && typeof doc === 'object' && doc._id !== undefined && doc._id !== '';
        }).map(function (doc) { return doc._id; });
      };
      return rule;
    }
    if (r0 === '_security' || r0 === '_revs_limit' || (r0 === '_index' && rest.length === 1)) {
      if (!READ_METHODS[method]) { rule.need = 'db_admin'; }
      return rule;
    }
    if (r0 === '_index' || DB_ADMIN_ENDPOINTS.indexOf(r0) !== -1) {
      rule.need = 'db_admin';
      return rule;
    }
    return { kind: 'server_admin' }; // _purge and anything we do not know
  }
  var docId = decode(r0);
  if (docId.charAt(0) === '_') {
    return { kind: 'invalid' };
  }
  if (rest.length === 1 && !READ_METHODS[method]) {
    if (method === 'PUT') {
      rule.bodyIds = putIds(req, docId);
    } else if (method === 'COPY') {
      var dest = String(req.headers.destination || '');
      var m = /(.+?)\?rev=(.+)/.exec(dest);
      var destId = m ? m[1] : dest;
      var need = idNeed(destId);
      if (need === 'security' || need === 'invalid') { return { kind: 'invalid' }; }
      rule.need = need;
    }
  }
  return rule;
}

// A JSON PUT writes the body's _id, else ?id=, else the path's id (express-pouchdb's documents route).
function putIds(req, pathId) {
  return function (body) {
    if (body && body._id) { return [body._id]; }
    var fromQuery = jsonQueryValue(req.query && req.query.id);
    return [fromQuery || pathId];
  };
}

function strictest(needs) {
  var order = ['member', 'db_admin', 'security', 'invalid'];
  return needs.reduce(function (a, b) { return order.indexOf(b) > order.indexOf(a) ? b : a; }, 'member');
}

module.exports = function makeGuard(pouchApp, PouchDB) {
  var authenticate = makeAuthenticator(pouchApp, PouchDB);
  var maxSize = function () { return pouchApp.couchConfig.get('couchdb', 'max_document_size'); };

  function readSecurity(db) {
    return PouchDB.allDbs().then(function (dbs) {
      if (dbs.indexOf(db) === -1) { refuse(404, 'not_found', 'Database does not exist.'); }
      return getOrCreateDB(PouchDB, db);
    }).then(function (pouch) {
      return pouch.get('_local/_security').then(function (doc) { return doc.security || {}; }, function (err) {
        if (err && err.status === 404) { return {}; }
        throw err;
      });
    });
  }

  // The same parser and limit as express-pouchdb's: it then finds the body parsed and does not read it again.
  function parseJson(req, res) {
    return new Promise(function (resolve, reject) {
      bodyParser.json({ limit: maxSize() })(req, res, function (err) {
        if (err) {
          return reject(err.status === 413 ? new GuardError(413, 'too_large', 'the request entity is too large')
            : new GuardError(400, 'bad_request', 'invalid_json'));
        }
        resolve(req.body);
      });
    });
  }

  function decide(req, res, user) {
    var vhosts = pouchApp.couchConfig.getSection('vhosts') || {};
    if (Object.keys(vhosts).length) { return notServerAdmin(); } // a vhost may route anywhere
    var rule = classify(req);
    if (rule.kind === 'open') { return null; }
    if (rule.kind === 'server_admin') { return notServerAdmin(); }
    if (rule.kind === 'system_db') { // _users, _replicator, ...: admin-only, as CouchDB 3's default security
      if (user.name === null) { refuse(401, 'unauthorized', 'You are not authorized to access this db.'); }
      refuse(403, 'forbidden', 'You are not allowed to access this db.');
    }
    if (rule.kind === 'invalid') {
      return refuse(400, 'bad_request', 'Only reserved document ids may start with underscore.');
    }
    var security;
    return readSecurity(rule.db).then(function (found) {
      security = found;
      if (!isMember(user, security)) {
        if (user.name === null) { refuse(401, 'unauthorized', 'You are not authorized to access this db.'); }
        refuse(403, 'forbidden', 'You are not allowed to access this db.');
      }
      if (!rule.bodyIds) { return rule.need; }
      return parseJson(req, res).then(function (body) {
        return strictest([rule.need].concat(rule.bodyIds(body).map(idNeed)));
      });
    }).then(function (need) {
      if (need === 'member') { return null; }
      if (need === 'invalid') {
        refuse(400, 'bad_request', 'Only reserved document ids may start with underscore.');
      }
      if (need === 'security') {
        refuse(403, 'forbidden', 'The security object is changed through /{db}/_security, by a db admin.');
      }
      if (!isDbAdmin(user, security)) {
        if (user.name === null) { refuse(401, 'unauthorized', 'You are not a db or server admin.'); }
        refuse(403, 'forbidden', 'You are not a db or server admin.');
      }
      return null;
    });
  }

  return function guard(req, res, next) {
    authenticate(req).then(function (user) {
      req.fieldsyncUser = user;
      if (isServerAdmin(user)) { return null; }
      return decide(req, res, user);
    }).then(function () {
      next();
    }, function (err) {
      if (!(err instanceof GuardError)) {
        process.stderr.write('fieldsync-server: guard error ' + (err && err.stack || err) + '\n');
        err = new GuardError(500, 'internal_server_error', 'The request could not be checked.');
      }
      res.status(err.status).set('Content-Type', 'application/json')
        .send(JSON.stringify({ error: err.error, reason: err.reason }) + '\n');
    });
  };
};

module.exports.classify = classify;

function (newDoc, oldDoc, userCtx, secObj) {
  // fieldsync: the door of every per-user meta database (fieldsync-user-<name>-meta).
  // The same rules as validators/interaction.py; ES5 only (Apache CouchDB 3 and PouchDB Server's
  // pouchdb-validation). Reasons never repeat a refused value: it may be the answer or name that must not pass.
  var ACTIONS = [
    'task_list:open', 'task_list:loaded', 'task_list:scroll',
    'task_filter:open', 'task_filter:select', 'task_filter:reset', 'task_filter:clear', 'task_filter:close',
    'task_group:show', 'task_group:select',
    'task:open', 'task:form_open', 'task:form_save', 'task:complete', 'task:cancel', 'task:back',
    'task_group:leave', 'task_list:leave'
  ];
  var KEY = /^[A-Za-z0-9_.:-]{1,64}$/;
  // a task title key or a form id (task.malaria.followup, pnc_home_visit): lower case, no run of 4 digits
  // (a phone number, an id, a date), at most 64 characters; a name written as a key still fits, so the
  // summarizer keeps only the refs of settings.interactionRefs when the programme lists them
  var REF = /^(?!.*[0-9]{4})[a-z][a-z0-9_]*([.:-][a-z0-9_]+)*$/;
  var DEVICE = /^[A-Za-z0-9_.:-]{1,128}$/;
  var VERSION = /^[A-Za-z0-9_.:+~-]{1,64}$/;
  var DETAIL = /^(0|[1-9][0-9]{0,8})$/;
  var DATE = /^([0-9]{4})-([0-9]{2})-([0-9]{2})$/;
  var CONTROL = /[\u0000-\u001f\u007f]/;
  var MIN_MS = 946684800000;
  var MAX_MS = 4102444800000;
  var MAX_EVENTS = 5000;
  var COUCH_MEMBERS = ['_id', '_rev', '_revisions', '_conflicts', '_deleted_conflicts'];

  var id = String(newDoc._id);
  function deny(field, reason) {
    throw ({ forbidden: id + ': ' + field + ': ' + reason });
  }
  function has(obj, key) {
    return Object.prototype.hasOwnProperty.call(obj, key);
  }
  function isObject(value) {
    return value !== null && typeof value === 'object' && Object.prototype.toString.call(value) === '[object Object]';
  }
  function isArray(value) {
    return Object.prototype.toString.call(value) === '[object Array]';
  }
  function isInt(value) {
    return typeof value === 'number' && isFinite(value) && Math.floor(value) === value;
  }
  function onlyKeys(obj, allowed, path) {
    for (var key in obj) {
      if (has(obj, key) && allowed.indexOf(key) === -1) {
        deny(path ? path + '.' + key : key, 'unknown field: only ' + allowed.join(', ') + ' are allowed');
      }
    }
  }
  function millis(value, path) {
    if (!isInt(value)) { deny(path, 'epoch milliseconds, an integer'); }
    if (value < MIN_MS || value >= MAX_MS) { deny(path, 'epoch milliseconds between 2000-01-01 and 2100-01-01'); }
  }
  function key(value, path) {
    if (typeof value !== 'string' || !KEY.test(value)) {
      deny(path, 'a key of 1-64 characters A-Za-z0-9_.:- (no spaces, never free text)');
    }
  }
  function calendarDate(value, path) {
    var m = typeof value === 'string' ? DATE.exec(value) : null;
    if (!m) { deny(path, 'a date YYYY-MM-DD'); }
    var y = +m[1], mo = +m[2], d = +m[3];
    var days = [31, (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if (mo < 1 || mo > 12 || d < 1 || d > days[mo - 1] || y < 1) { deny(path, 'not a calendar date (YYYY-MM-DD)'); }
  }

  function checkEvent(event, path) {
    if (!isObject(event)) { deny(path, 'an event is an object'); }
    onlyKeys(event, ['action', 'timestamp', 'ref', 'detail'], path);
    if (ACTIONS.indexOf(event.action) === -1) { deny(path + '.action', 'unknown action: one of ' + ACTIONS.join(', ')); }
    millis(event.timestamp, path + '.timestamp');
    if (has(event, 'ref') && (typeof event.ref !== 'string' || event.ref.length > 64 || !REF.test(event.ref))) {
      deny(path + '.ref', 'a task title key or a form id: lower case a-z 0-9 _ separated by . : -, at most 64 ' +
        'characters, no run of 4 digits (never a name, a number or free text)');
    }
    if (has(event, 'detail')) {
      var detail = event.detail;
      if (isInt(detail) && detail >= 0 && detail <= 999999999) { return; }
      if (typeof detail !== 'string' || !DETAIL.test(detail)) {
        deny(path + '.detail', 'a count or a position: digits only, no leading zero, at most 9');
      }
    }
  }

  function checkInteractionLog(doc) {
    onlyKeys(doc, COUCH_MEMBERS.concat(['_deleted', 'type', 'sessions', 'metadata']), '');
    var meta = doc.metadata;
    onlyKeys(meta, ['user', 'deviceId', 'date', 'version', 'conflicted'], 'metadata');
    if (typeof meta.user !== 'string' || meta.user.length < 1 || meta.user.length > 255 || CONTROL.test(meta.user)) {
      deny('metadata.user', 'a user name of 1-255 characters');
    }
    if (typeof meta.deviceId !== 'string' || !DEVICE.test(meta.deviceId)) {
      deny('metadata.deviceId', 'a device id of 1-128 characters A-Za-z0-9_.:-');
    }
    calendarDate(meta.date, 'metadata.date');
    if (typeof meta.version !== 'string' || !VERSION.test(meta.version)) {
      deny('metadata.version', 'a version of 1-64 characters A-Za-z0-9_.:+~-');
    }
    if (has(meta, 'conflicted') && typeof meta.conflicted !== 'boolean') {
      deny('metadata.conflicted', 'true or false');
    }
    var base = 'interaction-' + meta.date + '-' + meta.user + '-' + meta.deviceId;
    if (id !== base) {
      var suffix = id.slice(0, base.length + 1) === base + '-' ? id.slice(base.length + 1) : null;
      if (suffix === null || !KEY.test(suffix)) {
        deny('_id', 'the id must be interaction-<metadata.date>-<metadata.user>-<metadata.deviceId>, ' +
          'optionally followed by -<suffix> (1-64 of A-Za-z0-9_.:-)');
      }
    }
    if (!isArray(doc.sessions)) { deny('sessions', 'a list of sessions'); }
    var total = 0;
    for (var s = 0; s < doc.sessions.length; s++) {
      var session = doc.sessions[s];
      var spath = 'sessions[' + s + ']';
      if (!isObject(session)) { deny(spath, 'a session is an object'); }
      onlyKeys(session, ['session', 'startedAt', 'events'], spath);
      key(session.session, spath + '.session');
      millis(session.startedAt, spath + '.startedAt');
      if (!isArray(session.events)) { deny(spath + '.events', 'a list of events'); }
      total += session.events.length;
      if (total > MAX_EVENTS) { deny('sessions', 'more than ' + MAX_EVENTS + ' events'); }
      for (var e = 0; e < session.events.length; e++) {
        checkEvent(session.events[e], spath + '.events[' + e + ']');
      }
    }
  }

  var roles = (userCtx && isArray(userCtx.roles)) ? userCtx.roles : [];
  if (roles.indexOf('_admin') !== -1) { return; }

  var name = userCtx ? userCtx.name : null;
  var members = (secObj && secObj.members && isArray(secObj.members.names)) ? secObj.members.names : [];
  if (typeof name !== 'string' || !name) { deny('userCtx', 'log in: only the owner of this database may write'); }
  // _security already admits only the owner (and admins) to the database, on CouchDB and PouchDB Server alike;
  // PouchDB Server does not hand secObj to validation on _bulk_docs, so membership is checked where it is known.
  if (members.length && members.indexOf(name) === -1) { deny('userCtx', 'only the owner of this database may write'); }
  if (oldDoc && !oldDoc._deleted && isObject(oldDoc.metadata) && has(oldDoc.metadata, 'user') &&
      oldDoc.metadata.user !== name) {
    deny('metadata.user', 'the document belongs to another user');
  }
  if (newDoc._deleted === true) { return; }

  // interaction records only: a meta database is not a place for anything else a device would like to keep
  if (id.indexOf('interaction-') !== 0) { deny('_id', 'a meta database holds interaction records only (interaction-<date>-<user>-<device>)'); }
  if (newDoc.type !== 'interaction-log') { deny('type', 'a document with an interaction- id has type interaction-log'); }
  if (!isObject(newDoc.metadata)) { deny('metadata', 'an object with the user who wrote the document'); }
  if (newDoc.metadata.user !== name) { deny('metadata.user', 'must be the name of the user writing'); }
  if (has(newDoc, '_deleted')) { deny('_deleted', 'true or absent'); }
  checkInteractionLog(newDoc);
}

function (newDoc, oldDoc, userCtx, secObj) {
  // The door of an operational area's database. The area id below is written in when the design document is
  // deployed (one design document per area database). Admins (and the workers, which are admins) write
  // anything; a device's user writes only events, clients, structures of this area and task status changes.
  var AREA = '__FIELDSYNC_AREA__';
  var TASK_FIELDS = ['_rev', '_revisions', 'status', 'businessStatus', 'lastModified', 'owner', 'note'];
  var TASK_STATUSES = ['Draft', 'Ready', 'Cancelled', 'In Progress', 'Completed', 'Failed', 'Archived'];

  function isArray(x) { return Object.prototype.toString.call(x) === '[object Array]'; }
  function deny(field, reason) {
    throw({ forbidden: (newDoc._id || '?') + ': ' + field + ': ' + reason });
  }
  function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }
  function keys(o) { var out = []; for (var k in o) { if (Object.prototype.hasOwnProperty.call(o, k)) { out.push(k); } } return out; }

  var roles = (userCtx && isArray(userCtx.roles)) ? userCtx.roles : [];
  if (roles.indexOf('_admin') !== -1) { return; }
  var name = userCtx ? userCtx.name : null;
  if (typeof name !== 'string' || !name) { deny('userCtx', 'log in: only users assigned to area ' + AREA + ' may write'); }
  if (secObj && secObj.members) {
    var names = secObj.members.names || [];
    var allowed = secObj.members.roles || [];
    var member = names.indexOf(name) !== -1;
    for (var r = 0; r < roles.length && !member; r++) { member = allowed.indexOf(roles[r]) !== -1; }
    if (!member) { deny('userCtx', name + ' is not assigned to area ' + AREA); }
  }
  if (newDoc._id.indexOf('_design/') === 0) { deny('_id', 'design documents are written by admins only'); }
  if (newDoc._deleted) {
    deny('_deleted', 'devices do not delete documents of an operational area: archive or cancel them instead');
  }
  if (newDoc._id === 'settings') { deny('settings', 'settings are written on the server only'); }
  if (newDoc._id === 'assignments' || newDoc._id.charAt(0) === '_') { deny('_id', 'a reserved id, written on the server only'); }
  var type = newDoc.type;
  if (type === 'Plan') { deny('type', 'plans are written on the server only'); }
  // what this database already holds under the id decides what the id is: a document keeps its type, and
  // plans and jurisdictions (copies of the server's) are never a device's to change. (A device's unrelated
  // branch under a server id reaches here without oldDoc: the sync worker refuses it against the main database.)
  if (oldDoc && !oldDoc._deleted) {
    if (oldDoc.type === 'Plan' || oldDoc.jurisdiction === true) {
      deny('type', 'plans and jurisdictions are written on the server only');
    }
    if (oldDoc.type !== type) { deny('type', 'a document keeps its type (' + oldDoc.type + '), not ' + type); }
  }
  if (type === 'Feature') {
    if (newDoc.jurisdiction === true) { deny('jurisdiction', 'jurisdictions are written on the server only'); }
    var props = newDoc.properties || {};
    if (props.parentId !== AREA) {
      deny('properties.parentId', 'a structure of area ' + AREA + ' has parentId ' + AREA + ', not ' + props.parentId);
    }
    return;
  }
  if (type === 'Event') {
    if (newDoc.locationId !== AREA) {
      deny('locationId', 'an event of area ' + AREA + ' has locationId ' + AREA + ', not ' + newDoc.locationId);
    }
    return;
  }
  if (type === 'Client') {
    if (typeof newDoc.baseEntityId !== 'string' || !newDoc.baseEntityId) { deny('baseEntityId', 'required'); }
    return;
  }
  if (type === 'Task') {
    if (!oldDoc || oldDoc._deleted) { deny('type', 'tasks are generated on the server: a device changes their status only'); }
    if (newDoc.groupIdentifier !== AREA) { deny('groupIdentifier', 'a task of another area (' + newDoc.groupIdentifier + ')'); }
    if (TASK_STATUSES.indexOf(newDoc.status) === -1) { deny('status', 'not a task status: one of ' + TASK_STATUSES.join(', ')); }
    var texts = ['businessStatus', 'owner', 'lastModified'];
    for (var t = 0; t < texts.length; t++) {
      var v = newDoc[texts[t]];
      if (v !== undefined && !(typeof v === 'string' && v.length > 0 && v.length <= 200)) {
        deny(texts[t], 'a text of 1-200 characters');
      }
    }
    if (newDoc.note !== undefined && newDoc.note !== null) {
      var note = newDoc.note;
      if (!isArray(note) || note.length > 100) { deny('note', 'a list of annotations {authorString, time, text}'); }
      for (var n = 0; n < note.length; n++) {
        var item = note[n];
        if (!item || typeof item !== 'object' || isArray(item)) { deny('note', 'a list of annotations {authorString, time, text}'); }
        var ks = keys(item);
        for (var q = 0; q < ks.length; q++) {
          if (['authorString', 'time', 'text'].indexOf(ks[q]) === -1 || typeof item[ks[q]] !== 'string' ||
              item[ks[q]].length > 2000) {
            deny('note', 'a list of annotations {authorString, time, text}');
          }
        }
      }
    }
    var fields = keys(newDoc).concat(keys(oldDoc));
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f === '_id' || TASK_FIELDS.indexOf(f) !== -1) { continue; }
      if (!same(newDoc[f], oldDoc[f])) { deny(f, 'a device may change a task\'s status, businessStatus, lastModified, owner and note only'); }
    }
    return;
  }
  deny('type', 'devices write events, clients, structures and task status changes only, not ' + type);
}

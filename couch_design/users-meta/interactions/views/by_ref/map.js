function (doc) {
  // [ref, date] -> events naming that task title key or form id (one row per user-device-day).
  if (doc.type === 'interaction-log' && doc.summary && doc.summary.refs && doc.metadata) {
    for (var ref in doc.summary.refs) {
      if (Object.prototype.hasOwnProperty.call(doc.summary.refs, ref)) {
        emit([ref, doc.metadata.date], doc.summary.refs[ref]);
      }
    }
  }
}

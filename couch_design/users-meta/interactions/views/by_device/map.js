function (doc) {
  // [user, deviceId, date] -> interactions kept: which devices a user works on, and how much.
  if (doc.type === 'interaction-log' && doc.summary && doc.metadata) {
    emit([doc.metadata.user, doc.metadata.deviceId, doc.metadata.date], doc.summary.events);
  }
}

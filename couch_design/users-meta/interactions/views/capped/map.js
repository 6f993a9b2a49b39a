function (doc) {
  // [date, user, deviceId] -> interactions the per-user daily cap refused, for the days the cap was reached.
  if (doc.type === 'interaction-log' && doc.summary && doc.summary.capReached === true && doc.metadata) {
    emit([doc.metadata.date, doc.metadata.user, doc.metadata.deviceId], doc.summary.droppedByCap);
  }
}

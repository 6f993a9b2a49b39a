function (doc) {
  // [user, date] -> interactions kept (one row per device). group_level=2: per user and day;
  // group_level=1: per user over the range.
  if (doc.type === 'interaction-log' && doc.summary && doc.metadata) {
    emit([doc.metadata.user, doc.metadata.date], doc.summary.events);
  }
}

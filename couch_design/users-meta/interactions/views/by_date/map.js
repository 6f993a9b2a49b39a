function (doc) {
  // Merged daily documents by day: value = interactions kept. reduce=false lists the documents,
  // group=true sums the interactions of each day.
  if (doc.type === 'interaction-log' && doc.summary && doc.metadata) {
    emit(doc.metadata.date, doc.summary.events);
  }
}

function (doc) {
  if (doc.kind && doc.docId) {
    emit([doc.db || null, doc.docId, doc.createdAt || null], doc.kind);
  }
}

function (doc) {
  if (doc.kind) {
    emit([doc.kind, doc.createdAt || null], {db: doc.db || null, docId: doc.docId || null});
  }
}

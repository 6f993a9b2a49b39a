function (doc) {
  if (doc.type === 'Task') {
    emit([doc.planIdentifier, doc.status, doc.businessStatus || null, doc.code || null], 1);
  }
}

function (doc) {
  if (doc.type === 'Task' && doc['for']) {
    emit(doc['for'], {code: doc.code || null, plan: doc.planIdentifier, status: doc.status,
                      businessStatus: doc.businessStatus || null});
  }
}

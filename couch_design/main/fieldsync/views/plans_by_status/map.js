function (doc) {
  if (doc.type === 'Plan' || (!doc.type && doc.identifier && doc.action)) {
    var jurisdictions = doc.jurisdiction || [];
    for (var i = 0; i < jurisdictions.length; i++) {
      emit([doc.status, jurisdictions[i].code], null);
    }
  }
}

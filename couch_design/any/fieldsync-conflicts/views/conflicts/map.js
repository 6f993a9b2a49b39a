function (doc) {
  if (doc._conflicts && doc._conflicts.length) {
    emit([doc.type || null, doc._id], doc._conflicts.length);
  }
}

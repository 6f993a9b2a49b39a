function (doc) {
  // The location tree: jurisdictions and structures under their parent.
  if (doc.type === 'Feature' && doc.properties && doc.properties.parentId) {
    emit(doc.properties.parentId, null);
  }
}

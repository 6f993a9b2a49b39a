function (doc) {
  if (doc.type === 'Event') {
    emit(doc.baseEntityId || null, {eventType: doc.eventType || null, date: doc.eventDate || doc.dateCreated || null});
  }
}

function (doc) {
  // What belongs to an operational area: its tasks (by plan) and the events submitted there.
  if (doc.type === 'Task' && doc.groupIdentifier) {
    emit([doc.groupIdentifier, 'Task', doc.planIdentifier || null], null);
  } else if (doc.type === 'Event' && doc.locationId) {
    emit([doc.locationId, 'Event'], null);
  }
}

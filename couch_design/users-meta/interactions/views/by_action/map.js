function (doc) {
  // [action, date, user] -> how many times the user did it that day on one device.
  // _stats: sum = total, count = user-device-days, min/max per user-device-day.
  if (doc.type === 'interaction-log' && doc.summary && doc.summary.actions && doc.metadata) {
    for (var action in doc.summary.actions) {
      if (Object.prototype.hasOwnProperty.call(doc.summary.actions, action)) {
        emit([action, doc.metadata.date, doc.metadata.user], doc.summary.actions[action]);
      }
    }
  }
}

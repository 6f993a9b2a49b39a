function (doc) {
  // [action, next action, date] -> how often one followed the other within a session.
  if (doc.type === 'interaction-log' && doc.summary && doc.summary.transitions && doc.metadata) {
    var transitions = doc.summary.transitions;
    for (var from in transitions) {
      if (Object.prototype.hasOwnProperty.call(transitions, from)) {
        for (var to in transitions[from]) {
          if (Object.prototype.hasOwnProperty.call(transitions[from], to)) {
            emit([from, to, doc.metadata.date], transitions[from][to]);
          }
        }
      }
    }
  }
}

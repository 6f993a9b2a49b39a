function (doc) {
  // [measure, date, user] -> [count, totalMs, minMs, maxMs] for taskList (time on the task list),
  // openToFormSave and openToComplete; the reduce combines them (mean = totalMs / count).
  if (doc.type === 'interaction-log' && doc.summary && doc.metadata) {
    var measures = ['taskList', 'openToFormSave', 'openToComplete'];
    for (var i = 0; i < measures.length; i++) {
      var span = doc.summary[measures[i]];
      if (span && span.count > 0) {
        emit([measures[i], doc.metadata.date, doc.metadata.user], [span.count, span.totalMs, span.minMs, span.maxMs]);
      }
    }
  }
}

function (doc) {
  // every revision whose body a resolution record preserves, winner and losers
  if (doc.kind === 'conflict') {
    if (doc.winner) {
      emit([doc.db, doc.docId, doc.winner._rev], 'winner');
    }
    for (var i = 0; i < (doc.losers || []).length; i++) {
      emit([doc.db, doc.docId, doc.losers[i]._rev], 'loser');
    }
  }
}

function (doc) {
  // Every read the plan worker makes, in one index (PouchDB builds one index per view): keys are tagged.
  //   ['child', parentId]            locations by parent
  //   ['residence', structureId]     families living at a structure
  //   ['member', familyId]           members of a family
  //   ['task-for', entityId]         tasks of an entity
  //   ['task-group', jurisdiction, plan]   tasks of a jurisdiction
  //   ['event-entity', entityId] / ['event-location', locationId]
  //   ['plan', status, jurisdictionCode]
  var i;
  if (doc.type === 'Feature' && doc.properties && doc.properties.parentId) {
    emit(['child', doc.properties.parentId], null);
  } else if (doc.type === 'Client') {
    var rel = doc.relationships || {};
    if (doc.attributes && doc.attributes.residence && (doc.lastName === 'Family' || rel.family_head)) {
      emit(['residence', doc.attributes.residence], null);
    }
    var families = rel.family || [];
    for (i = 0; i < families.length; i++) {
      if (families[i] !== doc.baseEntityId) {
        emit(['member', families[i]], null);
      }
    }
  } else if (doc.type === 'Task') {
    if (doc['for']) {
      emit(['task-for', doc['for']], null);
    }
    emit(['task-group', doc.groupIdentifier || null, doc.planIdentifier || null], null);
  } else if (doc.type === 'Event') {
    emit(['event-entity', doc.baseEntityId || null], null);
    if (doc.locationId) {
      emit(['event-location', doc.locationId], null);
    }
  } else if (doc.type === 'Plan') {
    var jurisdictions = doc.jurisdiction || [];
    for (i = 0; i < jurisdictions.length; i++) {
      emit(['plan', doc.status || null, jurisdictions[i].code], null);
    }
  }
}

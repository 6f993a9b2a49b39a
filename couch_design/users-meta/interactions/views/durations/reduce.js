function (keys, values, rereduce) {
  // values (map output and reduce output alike): [count, totalMs, minMs, maxMs]
  var out = [0, 0, null, null];
  for (var i = 0; i < values.length; i++) {
    var v = values[i];
    out[0] += v[0];
    out[1] += v[1];
    if (v[2] !== null && (out[2] === null || v[2] < out[2])) { out[2] = v[2]; }
    if (v[3] !== null && (out[3] === null || v[3] > out[3])) { out[3] = v[3]; }
  }
  return out;
}

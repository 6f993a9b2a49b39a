"""Demo and benchmark support, outside the product's packages: ``fieldsync demo`` (``scenario``, ``forms``,
``report``), simulated devices (``devices``: real PouchDB through ``server/device.js``), synthetic operational
areas (``synthetic``) and a terminal progress bar (``progressbar``). Used by the demo command, the tests and
``bench/``; the workers never import it."""

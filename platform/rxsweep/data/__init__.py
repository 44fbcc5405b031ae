"""RxRx1 data: the site table (both public layouts), the synthetic generator, ingest and streaming."""

from smtplatrine.enrich.forensics import Archive, Document, FileType, Yara
from smtplatrine.enrich.geoip import GeoIPASN, GeoIPCity
from smtplatrine.enrich.providers import OTX, AbuseIPDB, VirusTotal
from smtplatrine.enrich.rdns import ReverseDNS

rdns = ReverseDNS()
geoip_city = GeoIPCity()
geoip_asn = GeoIPASN()
abuseipdb = AbuseIPDB()
virustotal = VirusTotal()
otx = OTX()
filetype = FileType()
archive = Archive()
document = Document()
yara = Yara()

# What every web server gets: sourced by groups/web/run.sh and by hosts that add to it.
install_motd "web"
install_file groups/web/site.conf /etc/nginx/conf.d/site.conf
